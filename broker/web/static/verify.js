// OmaData: the browser checks log entries itself, so the person need not take the server's word.
//
// For every element with data-log-index inside a [data-verify] container:
//   1. fetch the log's verifier key (/v1/log/key, a C2SP signed-note vkey) and check its key id;
//   2. fetch the signed checkpoint (/v1/log/checkpoint, c2sp.org/tlog-checkpoint) and verify its
//      Ed25519 signature with WebCrypto;
//   3. hash the entry's leaf bytes, SHA-256(0x00 || leaf), fetch its inclusion proof for the
//      checkpoint's tree size and check it against the root (RFC 9162, section 2.1.3.2);
//   4. check that the leaf says what the page shows (data-expect).
// The mark says "verified" only when all four pass, and a clear warning when any check fails.
// Without JavaScript, or without Ed25519 in WebCrypto, the page keeps its plain proof links.
(() => {
  "use strict";

  const containers = Array.from(document.querySelectorAll("[data-verify]"));
  if (containers.length === 0) {
    return;
  }

  class CheckFailed extends Error {}
  class Unsupported extends Error {}

  const encoder = new TextEncoder();
  const decoder = new TextDecoder("utf-8", { fatal: true });

  const fromBase64 = (text) => {
    const binary = atob(text);
    const out = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i += 1) {
      out[i] = binary.charCodeAt(i);
    }
    return out;
  };

  const concat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const part of parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  };

  const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);

  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

  const fetchText = async (url) => {
    let response;
    try {
      response = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    } catch (error) {
      throw new Unsupported(`${url} could not be fetched: ${error}`);
    }
    if (!response.ok) {
      throw new Unsupported(`${url} answered ${response.status}`);
    }
    return response.text();
  };

  // C2SP signed-note verifier key: <name>+<8 hex key id>+<base64(0x01 || 32-byte key)>.
  async function loadKey() {
    if (!window.crypto || !crypto.subtle) {
      throw new Unsupported("no WebCrypto");
    }
    const text = (await fetchText("/v1/log/key")).trim();
    const first = text.indexOf("+");
    const second = text.indexOf("+", first + 1);
    if (first < 1 || second < 0) {
      throw new CheckFailed("malformed verifier key");
    }
    const name = text.slice(0, first);
    const keyId = text.slice(first + 1, second);
    const raw = fromBase64(text.slice(second + 1));
    if (!/^[0-9a-f]{8}$/i.test(keyId) || raw.length !== 33 || raw[0] !== 0x01) {
      throw new CheckFailed("not an Ed25519 verifier key");
    }
    const publicKey = raw.slice(1);
    const digest = await sha256(concat(encoder.encode(name), new Uint8Array([0x0a, 0x01]), publicKey));
    const id = digest.slice(0, 4);
    if (!sameBytes(id, fromHex(keyId))) {
      throw new CheckFailed("verifier key id does not match the key");
    }
    let key;
    try {
      key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (error) {
      throw new Unsupported(`Ed25519 is not available: ${error}`);
    }
    return { name, id, key };
  }

  function fromHex(hex) {
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i += 1) {
      out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
    }
    return out;
  }

  // C2SP checkpoint in a signed note: text (origin, size, base64 root), blank line, signatures.
  async function loadCheckpoint(verifier) {
    const note = await fetchText("/v1/log/checkpoint");
    const split = note.lastIndexOf("\n\n");
    if (split < 0 || !note.endsWith("\n")) {
      throw new CheckFailed("malformed checkpoint note");
    }
    const text = note.slice(0, split + 1);
    const lines = note.slice(split + 2, -1).split("\n");
    let verified = false;
    for (const line of lines) {
      if (!line.startsWith("\u2014 ")) {
        throw new CheckFailed("malformed signature line");
      }
      const [name, blob] = line.slice(2).split(" ");
      if (name !== verifier.name || !blob) {
        continue;
      }
      const raw = fromBase64(blob);
      if (raw.length !== 68 || !sameBytes(raw.slice(0, 4), verifier.id)) {
        continue;
      }
      const ok = await crypto.subtle.verify(
        { name: "Ed25519" }, verifier.key, raw.slice(4), encoder.encode(text),
      );
      if (!ok) {
        throw new CheckFailed("checkpoint signature does not verify");
      }
      verified = true;
    }
    if (!verified) {
      throw new CheckFailed("checkpoint is not signed by the log's key");
    }
    const [origin, sizeText, rootText] = text.slice(0, -1).split("\n");
    const root = fromBase64(rootText || "");
    if (origin !== verifier.name || !/^(0|[1-9][0-9]*)$/.test(sizeText || "") || root.length !== 32) {
      throw new CheckFailed("checkpoint text is not this log's");
    }
    return { size: Number(sizeText), root };
  }

  // RFC 9162, section 2.1.3.2: verifying an inclusion proof.
  async function rootFromProof(index, size, leafHash, proof) {
    if (index >= size) {
      throw new CheckFailed("index outside the tree");
    }
    let fn = index;
    let sn = size - 1;
    let r = leafHash;
    for (const p of proof) {
      if (sn === 0) {
        throw new CheckFailed("proof too long");
      }
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(concat(new Uint8Array([1]), p, r));
        if (fn % 2 === 0) {
          while (fn % 2 === 0 && fn !== 0) {
            fn = Math.floor(fn / 2);
            sn = Math.floor(sn / 2);
          }
        }
      } else {
        r = await sha256(concat(new Uint8Array([1]), r, p));
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    if (sn !== 0) {
      throw new CheckFailed("proof too short");
    }
    return r;
  }

  function leafSays(leaf, expected) {
    const body = JSON.parse(decoder.decode(leaf));
    for (const [key, value] of Object.entries(expected)) {
      if (JSON.stringify(body[key]) !== JSON.stringify(value)) {
        return false;
      }
    }
    return true;
  }

  async function checkEntry(element, checkpoint) {
    const index = Number(element.dataset.logIndex);
    if (index >= checkpoint.size) {
      return "pending";
    }
    const leaf = fromBase64(element.dataset.leaf || "");
    if (!leafSays(leaf, JSON.parse(element.dataset.expect || "{}"))) {
      throw new CheckFailed("the leaf does not say what the page shows");
    }
    let response;
    try {
      response = await fetch(
        `/v1/log/proofs/inclusion?index=${index}&tree_size=${checkpoint.size}`,
        { cache: "no-store", credentials: "same-origin" },
      );
    } catch (error) {
      throw new Unsupported(`the proof could not be fetched: ${error}`);
    }
    if (!response.ok) {
      throw new CheckFailed(`no inclusion proof (${response.status})`);
    }
    const proof = (await response.json()).hashes.map(fromBase64);
    const leafHash = await sha256(concat(new Uint8Array([0]), leaf));
    const root = await rootFromProof(index, checkpoint.size, leafHash, proof);
    if (!sameBytes(root, checkpoint.root)) {
      throw new CheckFailed("the entry is not in the signed log");
    }
    return "verified";
  }

  const SYMBOLS = { checking: "…", verified: "✓", failed: "⚠", pending: "…", unsupported: "ⓘ" };

  function show(container, element, state, detail) {
    const markEl = element.querySelector("[data-mark]");
    if (!markEl) {
      return;
    }
    markEl.dataset.state = state;
    markEl.querySelector(".mark-symbol").textContent = SYMBOLS[state];
    const message = container.dataset[`msg${state[0].toUpperCase()}${state.slice(1)}`] || state;
    markEl.querySelector(".mark-text").textContent = message;
    if (detail) {
      markEl.title = detail;
    }
  }

  function summarise(container, states) {
    const summary = container.querySelector("[data-summary]");
    if (!summary) {
      return;
    }
    const count = (s) => states.filter((x) => x === s).length;
    const failed = count("failed");
    const unchecked = count("unsupported");
    const say = (key, n) => (container.dataset[key] || "").replace("{n}", String(n));
    if (failed > 0) {
      summary.dataset.state = "failed";
      summary.textContent = `⚠ ${say("msgSomeFailed", failed)}`;
    } else if (unchecked > 0) {
      summary.dataset.state = "unsupported";
      summary.textContent = `ⓘ ${say("msgSomeUnchecked", unchecked)}`;
    } else if (count("verified") > 0) {
      summary.dataset.state = "verified";
      summary.textContent = `✓ ${say("msgAllVerified", count("verified"))}`;
    }
  }

  async function run() {
    const work = containers.map((c) => [c, Array.from(c.querySelectorAll("[data-log-index]"))]);
    for (const [container, entries] of work) {
      entries.forEach((e) => show(container, e, "checking"));
    }
    let checkpoint = null;
    let failure = null;
    try {
      const verifier = await loadKey();
      checkpoint = await loadCheckpoint(verifier);
      // An entry newer than the checkpoint is checked once the log signs again (about a second).
      const newest = Math.max(...work.flatMap(([, es]) => es.map((e) => Number(e.dataset.logIndex))));
      for (let tries = 0; newest >= checkpoint.size && tries < 8; tries += 1) {
        await new Promise((resolve) => setTimeout(resolve, 750));
        checkpoint = await loadCheckpoint(verifier);
      }
    } catch (error) {
      failure = error;
    }
    for (const [container, entries] of work) {
      const states = [];
      for (const element of entries) {
        let state;
        let detail = "";
        if (failure) {
          state = failure instanceof CheckFailed ? "failed" : "unsupported";
          detail = String(failure.message || failure);
        } else {
          try {
            state = await checkEntry(element, checkpoint);
          } catch (error) {
            state = error instanceof Unsupported ? "unsupported" : "failed";
            detail = String(error.message || error);
          }
        }
        show(container, element, state, detail);
        states.push(state);
      }
      summarise(container, states);
    }
    document.documentElement.dataset.verifyDone = "true";
  }

  run();
})();
