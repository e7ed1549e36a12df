"""Server-rendered pages: sign-in and the consent page (more come with the person's pages)."""
