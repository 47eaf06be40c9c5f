// A real OpenID Provider for the upstream sign-in tests: oidc-provider (an OpenID Certified
// implementation) on 127.0.0.1, configured from a JSON file the test writes, with no login UI.
//
//   node server.mjs CONFIG.json
//
// CONFIG: {"port": 0, "host": "127.0.0.1", "issuer": "http://127.0.0.1:PORT",
//          "admin_token": "...", "clients": [{client_id, client_secret, redirect_uris,
//          token_endpoint_auth_method?}], "accounts": {SUB: {email, email_verified, name?,
//          given_name?, family_name?, acr?, amr?}}}
//
// Signing in without a UI: the provider sends the browser to GET /interaction/UID; that route
// signs in the account named by the `login` query parameter (or the `op_login` cookie) with
// the account's acr and amr, grants what the client asked for, and returns to the provider.
// A consent-only interaction (the browser already signed in here) is granted at once.
//
// Test controls, JSON, with `Authorization: Bearer ADMIN_TOKEN`:
//   PUT  /_admin/accounts/SUB          define or replace an account
//   PUT  /_admin/clients               replace the registered clients (the provider is rebuilt)
//   POST /_admin/rotate                a new signing key replaces the old one (the JWKS then
//                                      lists only the new key); answers {kid, previous_kid}
//   POST /_admin/next-id-token         changes the ID token of the next token response:
//                                      {"claims": {...}, "signer"?: ...} re-signs it with these
//                                      claims changed (a null value removes the claim), by the
//                                      provider's key unless `signer` says otherwise (see
//                                      resign), or {"token": "..."} replaces it with that JWT
//   DELETE /_admin/next-id-token       forgets the changes not used yet
//   GET  /_admin/interactions          what each interaction saw: {uid, prompt, reasons, params}
//   GET  /_admin/keys                  {kid} of the current signing key
// Everything else is oidc-provider itself (discovery, /auth, /token, /jwks, /me, ...).

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const host = config.host || '127.0.0.1';
const adminToken = config.admin_token || '';

const state = {
  accounts: { ...(config.accounts || {}) },
  clients: [...(config.clients || [])],
  key: newKey(),
  tweaks: [],
  interactions: [],
  provider: null,
  handler: null,
};
// One set of cookie keys for every provider instance this process builds, so that a rebuilt
// provider (key rotation, new clients) still reads the browser's session cookies; sessions,
// grants and codes live in oidc-provider's memory adapter, shared by the instances.
const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = crypto.randomBytes(8).toString('hex');
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  return { kid, jwk, privateKey };
}

function buildProvider() {
  const provider = new Provider(config.issuer, {
    clients: state.clients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      redirect_uris: client.redirect_uris,
      token_endpoint_auth_method: client.token_endpoint_auth_method || 'client_secret_basic',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'RS256',
    })),
    jwks: { keys: [state.key.jwk] },
    cookies: { keys: cookieKeys },
    // acr and amr are in every ID token that has them (scope openid); the scope claims too,
    // as in the ID tokens of most providers, not only at the userinfo endpoint
    claims: {
      openid: ['sub', 'acr', 'amr', 'auth_time'],
      email: ['email', 'email_verified'],
      profile: ['name', 'given_name', 'family_name'],
      acr: null,
      amr: null,
      auth_time: null,
      sid: null,
      iss: null,
    },
    conformIdTokenClaims: false,
    acrValues: [
      'urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport',
      'urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified',
      'https://refeds.org/profile/mfa',
      'silver',
    ],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      userinfo: { enabled: true },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, sub) => {
      const account = state.accounts[sub];
      if (!account) return undefined;
      return {
        accountId: sub,
        async claims() {
          const claims = { sub };
          for (const name of ['email', 'email_verified', 'name', 'given_name', 'family_name']) {
            if (account[name] !== undefined) claims[name] = account[name];
          }
          return claims;
        },
      };
    },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      Grant: 3600,
      IdToken: 300,
      Interaction: 600,
      Session: 3600,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'text/plain; charset=utf-8';
      ctx.body = `oidc-provider error: ${out.error}: ${out.error_description || ''}\n`;
    },
  });
  provider.proxy = false;
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  // the test's ID token changes apply to the next token response of the authorization code grant
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path !== '/token' || ctx.status !== 200 || !ctx.body || !ctx.body.id_token) return;
    const tweak = state.tweaks.shift();
    if (!tweak) return;
    if (tweak.token) {
      ctx.body.id_token = tweak.token;
    } else {
      const secret = ctx.oidc && ctx.oidc.client ? ctx.oidc.client.clientSecret : '';
      ctx.body.id_token = resign(ctx.body.id_token, tweak.claims || {}, tweak.signer || 'current', secret);
    }
  });
  return provider;
}

// The ID token again with `changes` to its claims (a null value removes one), signed by
// `signer`: "current" (the provider's own key, so the signature is good), "foreign-same-kid"
// or "foreign-new-kid" (a key the provider never published, under its key's kid or another),
// "none" (alg none, no signature) or "hs256" (HMAC with the client's secret).
function resign(token, changes, signer, clientSecret) {
  const [header, payload] = token.split('.').slice(0, 2).map((part) => JSON.parse(Buffer.from(part, 'base64url')));
  for (const [name, value] of Object.entries(changes)) {
    if (value === null) delete payload[name];
    else payload[name] = value;
  }
  const encode = (part) => Buffer.from(JSON.stringify(part)).toString('base64url');
  const body = encode(payload);
  if (signer === 'none') return `${encode({ alg: 'none' })}.${body}.`;
  if (signer === 'hs256') {
    const input = `${encode({ alg: 'HS256' })}.${body}`;
    return `${input}.${crypto.createHmac('sha256', clientSecret).update(input).digest('base64url')}`;
  }
  let key = state.key;
  if (signer === 'foreign-same-kid') key = { ...newKey(), kid: state.key.kid };
  else if (signer === 'foreign-new-kid') key = newKey();
  else if (signer !== 'current') throw new Error(`unknown signer ${signer}`);
  const input = `${encode({ ...header, kid: key.kid, alg: 'RS256' })}.${body}`;
  const signature = crypto.sign('sha256', Buffer.from(input), key.privateKey);
  return `${input}.${signature.toString('base64url')}`;
}

function cookie(req, name) {
  for (const part of (req.headers.cookie || '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

function send(res, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'Content-Type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

async function interaction(req, res, url) {
  const { provider } = state;
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  state.interactions.push({
    uid: details.uid, prompt: prompt.name, reasons: prompt.reasons, params,
  });
  const result = {};
  let accountId = details.session && details.session.accountId;
  if (prompt.name === 'login') {
    accountId = url.searchParams.get('login') || cookie(req, 'op_login');
    const account = accountId && state.accounts[accountId];
    if (!account) {
      send(res, 400, `no account to sign in: ${accountId || '(none named)'}\n`);
      return;
    }
    result.login = { accountId, remember: true };
    if (account.acr !== undefined) result.login.acr = account.acr;
    if (account.amr !== undefined) result.login.amr = account.amr;
  } else if (prompt.name !== 'consent') {
    send(res, 400, `unexpected prompt ${prompt.name}\n`);
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope || 'openid'));
  const missing = prompt.details || {};
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  result.consent = { grantId: await grant.save() };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

async function admin(req, res, url) {
  if (!adminToken || req.headers.authorization !== `Bearer ${adminToken}`) {
    send(res, 401, { error: 'unauthenticated' });
    return;
  }
  const path = url.pathname.slice('/_admin'.length);
  if (req.method === 'PUT' && path.startsWith('/accounts/')) {
    const sub = decodeURIComponent(path.slice('/accounts/'.length));
    state.accounts[sub] = await readJson(req);
    send(res, 200, { sub, ...state.accounts[sub] });
  } else if (req.method === 'PUT' && path === '/clients') {
    state.clients = (await readJson(req)).clients;
    install();
    send(res, 200, { clients: state.clients.map((client) => client.client_id) });
  } else if (req.method === 'POST' && path === '/rotate') {
    const previous = state.key.kid;
    state.key = newKey();
    install();
    send(res, 200, { kid: state.key.kid, previous_kid: previous });
  } else if (req.method === 'POST' && path === '/next-id-token') {
    state.tweaks.push(await readJson(req));
    send(res, 200, { queued: state.tweaks.length });
  } else if (req.method === 'DELETE' && path === '/next-id-token') {
    state.tweaks = [];
    send(res, 200, { queued: 0 });
  } else if (req.method === 'GET' && path === '/interactions') {
    send(res, 200, { interactions: state.interactions });
  } else if (req.method === 'GET' && path === '/keys') {
    send(res, 200, { kid: state.key.kid });
  } else {
    send(res, 404, { error: 'not_found' });
  }
}

function install() {
  state.provider = buildProvider();
  state.handler = state.provider.callback();
}

install();

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, config.issuer);
  try {
    if (url.pathname.startsWith('/_admin/')) {
      await admin(req, res, url);
    } else if (req.method === 'GET' && url.pathname.startsWith('/interaction/')) {
      await interaction(req, res, url);
    } else {
      state.handler(req, res);
    }
  } catch (error) {
    console.error(error);
    if (!res.headersSent) send(res, 500, `${error}\n`);
  }
});

server.listen(config.port, host, () => {
  console.log(`listening on ${host}:${server.address().port} as ${config.issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
