// A real OpenID Connect provider (node-oidc-provider) for Parley's tests.
//
// Started by tests/oidc.py (OidcProvider.start), which picks a free loopback port and runs
//
//     node server.mjs --port N [--issuer http://127.0.0.1:N]
//
// The issuer defaults to http://127.0.0.1:N. node-oidc-provider bakes the issuer into every
// token and the discovery document, so it must be known before listening: that is why the port
// is chosen by the caller rather than with `listen(0)`. Flags may also come from the
// environment: OIDC_PORT, OIDC_ISSUER.
//
// Other environment knobs:
//   OIDC_REDIRECT_URIS      comma-separated redirect URIs of the `parley-test` client
//                           (default http://127.0.0.1/callback)
//   OIDC_TEST_PASSWORD      the one password every account logs in with (default
//                           parley-test-password)
//   OIDC_ACCESS_TOKEN_TTL   seconds a JWT access token lives (default 300)
//
// What it offers:
//   * RS256 signing keys generated at start, kept in memory, published at /jwks.
//   * A confidential client `parley-test` / `parley-test-secret` (HTTP Basic auth at /token) with
//     authorization_code (PKCE S256 required), client_credentials and refresh_token.
//   * Any account id exists: claims sub=<id>, email=<id>@example.test, email_verified, name.
//   * Resource indicators (RFC 8707): a token request with `resource=<absolute URI>` gets an
//     RS256 JWT access token with aud=<resource>, iss=<issuer>. A resource whose path ends with
//     `/short-lived` gets a 1-second token, so a test can hold an (almost) expired token without
//     sleeping long. Resource servers accept the scopes `api:read api:write`.
//   * A plain-HTML interaction (login) form: GET /interaction/:uid shows it, POST
//     /interaction/:uid with `login` and `password` (form-encoded) signs in. Consent is implied:
//     this provider treats every client as first-party, so no consent screen is ever needed.
//
// On success it prints "oidc-provider listening on <issuer>" on stdout; tests wait for that line.

import * as crypto from 'node:crypto';
import * as http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    issuer: { type: 'string' },
  },
});

const port = Number.parseInt(args.port ?? process.env.OIDC_PORT ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('usage: node server.mjs --port N [--issuer URL]  (or OIDC_PORT / OIDC_ISSUER)');
  process.exit(2);
}
const issuer = (args.issuer ?? process.env.OIDC_ISSUER ?? `http://127.0.0.1:${port}`).replace(/\/+$/, '');

const redirectUris = (process.env.OIDC_REDIRECT_URIS ?? 'http://127.0.0.1/callback')
  .split(',')
  .map((uri) => uri.trim())
  .filter(Boolean);
const testPassword = process.env.OIDC_TEST_PASSWORD ?? 'parley-test-password';
const accessTokenTTL = Number.parseInt(process.env.OIDC_ACCESS_TOKEN_TTL ?? '300', 10);
const SHORT_LIVED_TTL = 1;
const RESOURCE_SCOPE = 'api:read api:write';

// Fresh keys each run: tests must never depend on a fixed key, and nothing survives a restart.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingJwk = {
  ...privateKey.export({ format: 'jwk' }),
  kid: crypto.randomUUID(),
  alg: 'RS256',
  use: 'sig',
};

const findAccount = async (_ctx, id) => ({
  accountId: id,
  // `claims` is asked for once per token/userinfo response; everything is derived from the id.
  async claims() {
    return {
      sub: id,
      email: `${id}@example.test`,
      email_verified: true,
      name: id.charAt(0).toUpperCase() + id.slice(1),
    };
  },
});

// Called at the authorization endpoint once a user is signed in. Every client here is
// first-party, so instead of asking for consent we grant exactly what the request asks for;
// that keeps the HTTP login recipe to a single form POST.
async function loadExistingGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  let grant = grantId ? await oidc.provider.Grant.find(grantId) : undefined;
  grant ??= new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });

  const oidcScopes = [...oidc.requestParamOIDCScopes];
  if (oidcScopes.length) grant.addOIDCScope(oidcScopes.join(' '));
  const claims = [...oidc.requestParamClaims];
  if (claims.length) grant.addOIDCClaims(claims);
  for (const [indicator, resourceServer] of Object.entries(oidc.resourceServers)) {
    const scopes = [...oidc.requestParamScopes].filter((scope) => resourceServer.scopes.has(scope));
    if (scopes.length) grant.addResourceScope(indicator, scopes.join(' '));
  }
  await grant.save();
  return grant;
}

const configuration = {
  clients: [
    {
      client_id: 'parley-test',
      client_secret: 'parley-test-secret',
      redirect_uris: redirectUris,
      grant_types: ['authorization_code', 'client_credentials', 'refresh_token'],
      response_types: ['code'],
      // The provider enforces the registered method: send id/secret as HTTP Basic auth.
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingJwk] },
  // Random per run: cookies only need to survive within one test session.
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  findAccount,
  loadExistingGrant,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile'],
  // Code flow only: nothing in Parley uses implicit or hybrid responses.
  responseTypes: ['code'],
  // Put the scope-granted claims (email, name) into the ID token itself, not only /me, so a test
  // that only has the ID token can check them.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    // Our own interaction routes below replace the dev ones (which would ignore the password).
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      // No resource requested: opaque token for /me. One resource requested at /auth and none at
      // /token: still opaque (the caller must name the resource at /token to get a JWT).
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => false,
      getResourceServerInfo: async (_ctx, resourceIndicator) => ({
        scope: RESOURCE_SCOPE,
        audience: resourceIndicator,
        // The TTL rides on the resource indicator so a single test can ask for a token that
        // expires almost at once, without restarting the provider with other settings.
        accessTokenTTL: new URL(resourceIndicator).pathname.endsWith('/short-lived')
          ? SHORT_LIVED_TTL
          : accessTokenTTL,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: 'RS256' } },
      }),
    },
  },
  // Explicit TTLs: short enough for tests, and setting them silences the "you should change
  // this" warnings the defaults print. Access tokens use the resource server's TTL when there is
  // one (see getResourceServerInfo).
  ttl: {
    AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
    ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? accessTokenTTL,
    AuthorizationCode: 60,
    IdToken: 300,
    RefreshToken: 3600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
  },
  renderError: async (ctx, out) => {
    ctx.type = 'json';
    ctx.body = out;
  },
};

const provider = new Provider(issuer, configuration);

const escapeHtml = (value) => String(value).replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

function loginPage(uid, { error, loginHint } = {}) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Parley test sign-in</title></head>
<body>
${error ? `<p class="error">${escapeHtml(error)}</p>` : ''}
<form method="post" action="/interaction/${escapeHtml(uid)}">
  <input type="hidden" name="prompt" value="login">
  <input type="text" name="login" value="${escapeHtml(loginHint ?? '')}" required>
  <input type="password" name="password" required>
  <button type="submit">Sign in</button>
</form>
</body></html>`;
}

function consentPage(uid) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Parley test consent</title></head>
<body>
<form method="post" action="/interaction/${escapeHtml(uid)}">
  <input type="hidden" name="prompt" value="consent">
  <button type="submit">Continue</button>
</form>
</body></html>`;
}

function send(res, status, contentType, body) {
  res.statusCode = status;
  res.setHeader('Content-Type', contentType);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// GET/POST /interaction/:uid. Plain node handlers around provider.interactionDetails /
// interactionFinished, which work on the raw req/res.
async function handleInteraction(req, res, uid) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    send(res, 400, 'text/plain', `interaction not found: ${err.message}\n`);
    return;
  }
  if (details.uid !== uid) {
    send(res, 400, 'text/plain', 'interaction cookie does not match the URL\n');
    return;
  }
  const promptName = details.prompt.name;

  if (req.method === 'GET') {
    const page = promptName === 'login'
      ? loginPage(uid, { loginHint: details.params.login_hint })
      : consentPage(uid);
    send(res, 200, 'text/html; charset=utf-8', page);
    return;
  }
  if (req.method !== 'POST') {
    send(res, 405, 'text/plain', 'method not allowed\n');
    return;
  }

  const form = await readForm(req);
  if (promptName === 'login') {
    const login = form.get('login')?.trim();
    if (!login || form.get('password') !== testPassword) {
      send(res, 401, 'text/html; charset=utf-8', loginPage(uid, { error: 'Invalid login or password.', loginHint: login }));
      return;
    }
    // `consent: {}` also settles an explicit prompt=consent (needed for offline_access); the
    // grant itself comes from loadExistingGrant.
    await provider.interactionFinished(req, res, { login: { accountId: login }, consent: {} }, {
      mergeWithLastSubmission: false,
    });
    return;
  }
  await provider.interactionFinished(req, res, { consent: {} }, { mergeWithLastSubmission: true });
}

const providerCallback = provider.callback();
const server = http.createServer((req, res) => {
  const match = /^\/interaction\/([^/?]+)(?:\?.*)?$/.exec(req.url ?? '');
  if (match) {
    handleInteraction(req, res, match[1]).catch((err) => {
      console.error(err);
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      else res.end();
    });
    return;
  }
  providerCallback(req, res);
});

provider.on('server_error', (_ctx, err) => console.error('server_error', err));

server.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening on ${issuer}`);
});

// The Python side sends SIGTERM; exit promptly without waiting for keep-alive sockets.
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
