// The token-issuance benchmark's comparison server: oidc-provider, configured like the broker's
// token endpoint, with refresh tokens pre-seeded through its own models.
//
//   node server.mjs PORT SEEDS     (run from a directory where `npm install` put oidc-provider)
//
// Prints one JSON line {"client_id", "client_secret", "refresh_tokens": [...]} once it listens.
// Like the broker: client_secret_basic, JWT access tokens (RFC 9068 shape, signed with Ed25519
// as EdDSA), refresh tokens rotated on every use. The refresh tokens are made the way its
// authorization code grant would make them (a Grant with offline_access and the resource's
// scope, then a RefreshToken bound to it), without the interactive sign-in and consent pages.
import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 3000);
const seeds = Number(process.argv[3] || 64);
const issuer = `http://127.0.0.1:${port}`;
const resource = 'urn:omadata:bench:api';
const clientId = 'bench-client';
const clientSecret = randomBytes(32).toString('base64url');

// Its development adapter is an LRU of 1,000 entries, which evicts the seeded refresh tokens
// while the chains of the first clients run; this one keeps everything (expiry is not needed
// here). Lookups are by Map, as cheap as an in-memory store gets.
const stores = new Map();
const byGrant = new Map(); // grantId -> [store, id] of every token of the grant
class MapAdapter {
  constructor(model) {
    if (!stores.has(model)) stores.set(model, new Map());
    this.store = stores.get(model);
  }

  async upsert(id, payload) {
    this.store.set(id, payload);
    if (payload.grantId) {
      if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, []);
      byGrant.get(payload.grantId).push([this.store, id]);
    }
  }

  async find(id) {
    return this.store.get(id);
  }

  async findByUid(uid) {
    for (const payload of this.store.values()) if (payload.uid === uid) return payload;
    return undefined;
  }

  async findByUserCode(userCode) {
    for (const payload of this.store.values()) if (payload.userCode === userCode) return payload;
    return undefined;
  }

  async consume(id) {
    const payload = this.store.get(id);
    if (payload) payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    this.store.delete(id);
  }

  async revokeByGrantId(grantId) {
    for (const [store, id] of byGrant.get(grantId) || []) store.delete(id);
    byGrant.delete(grantId);
  }
}

const jwk = (pair, extra) => ({ ...pair.privateKey.export({ format: 'jwk' }), ...extra });
const keys = [
  jwk(generateKeyPairSync('ed25519'), { kid: 'ed', alg: 'EdDSA', use: 'sig' }),
  // oidc-provider wants an RS256 key for ID tokens; none are issued in this benchmark.
  jwk(generateKeyPairSync('rsa', { modulusLength: 2048 }), { kid: 'rs', alg: 'RS256', use: 'sig' }),
];

const provider = new Provider(issuer, {
  adapter: MapAdapter,
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
      response_types: ['code'],
      redirect_uris: ['http://127.0.0.1:9/callback'],
      scope: 'offline_access api:read',
    },
  ],
  jwks: { keys },
  scopes: ['offline_access', 'api:read'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: 'api:read',
        audience: resource,
        accessTokenFormat: 'jwt',
        accessTokenTTL: 300,
        jwt: { sign: { alg: 'EdDSA' } },
      }),
    },
  },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'EdDSA'] },
  rotateRefreshToken: true,
  ttl: { RefreshToken: 30 * 24 * 3600, Grant: 30 * 24 * 3600 },
  findAccount: (ctx, sub) => ({ accountId: sub, claims: () => ({ sub }) }),
});
provider.proxy = false;

const client = await provider.Client.find(clientId);
const refreshTokens = [];
for (let i = 0; i < seeds; i += 1) {
  const accountId = `person-${i}`;
  const grant = new provider.Grant({ accountId, clientId });
  grant.addOIDCScope('offline_access');
  grant.addResourceScope(resource, 'api:read');
  const grantId = await grant.save();
  const token = new provider.RefreshToken({
    accountId,
    client,
    grantId,
    gty: 'authorization_code',
    scope: 'offline_access api:read',
    resource,
    authTime: Math.floor(Date.now() / 1000),
  });
  refreshTokens.push(await token.save());
}

provider.listen(port, '127.0.0.1', () => {
  process.stdout.write(
    `${JSON.stringify({ client_id: clientId, client_secret: clientSecret, refresh_tokens: refreshTokens })}\n`,
  );
});
