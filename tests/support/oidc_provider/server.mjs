// A real OpenID Connect provider (panva's oidc-provider) on loopback, for bastion's tests.
//
//   node server.mjs <port>
//
// Environment: OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URIS (space-separated),
// and OIDC_CLAIMS_IN_ID_TOKEN=0 to keep email and name out of the ID token (they are
// then only in UserInfo, as conforming providers do when they issue an access token).
//
// Sign-in is one form post instead of a login page: POST /interaction/<uid> with
// account=<name>. Consent is implied for the one (first-party) client. The signing
// keys are made at start-up, so a restart is also a key rotation.

import { generateKeyPairSync, randomBytes } from 'node:crypto';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.OIDC_PORT);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs <port>');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

const accounts = {
  alice: { sub: 'alice', email: 'alice@example.com', email_verified: true, name: 'Alice Liddell' },
  carol: { sub: 'carol', email: 'Carol@Example.COM', email_verified: true, name: 'Carol' },
  mallory: { sub: 'mallory', email: 'mallory@example.com', email_verified: false, name: 'Mallory' },
};

const signingKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });

const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.OIDC_CLIENT_ID ?? 'bastion',
    client_secret: process.env.OIDC_CLIENT_SECRET ?? 'bastion-test-secret',
    redirect_uris: (process.env.OIDC_REDIRECT_URIS ?? 'http://127.0.0.1/callback').split(' '),
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [{ ...signingKey, kid: randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' }] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  conformIdTokenClaims: process.env.OIDC_CLAIMS_IN_ID_TOKEN === '0',
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const claims = accounts[sub];
    return claims && { accountId: sub, claims: async () => claims };
  },
  async loadExistingGrant(ctx) {
    const { client, session } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId ?? session.grantIdFor(client.clientId);
    if (grantId) {
      return ctx.oidc.provider.Grant.find(grantId);
    }
    const grant = new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope('openid email profile');
    await grant.save();
    return grant;
  },
});

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

provider.use(async (ctx, next) => {
  const match = /^\/interaction\/([\w-]+)$/.exec(ctx.path);
  if (!match) {
    return next();
  }
  await provider.interactionDetails(ctx.req, ctx.res);
  if (ctx.method === 'GET') {
    ctx.type = 'html';
    ctx.body = `<form method="post"><input name="account" value="alice"><button>Sign in</button></form>`;
    return undefined;
  }
  if (ctx.method !== 'POST') {
    ctx.throw(405);
  }
  const account = (await readForm(ctx.req)).get('account');
  if (!Object.hasOwn(accounts, account ?? '')) {
    ctx.throw(400, `unknown account ${account}`);
  }
  const returnTo = await provider.interactionResult(ctx.req, ctx.res, { login: { accountId: account } });
  ctx.status = 303;
  ctx.redirect(returnTo);
  return undefined;
});

// SIGTERM ends the process at once (Node's default), open keep-alive connections or not.
provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc provider ready at ${issuer}`);
});
