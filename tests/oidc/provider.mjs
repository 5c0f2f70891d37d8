// A real OpenID Connect provider for the single sign-on tests: panva's oidc-provider (the
// certified Node implementation), with its development login screens, one confidential client
// and a few accounts whose `groups` claim says what they are in the hotel group's directory.
//
//   node provider.mjs <port> <redirect_uri> <accounts.json> [issuer host]
//
// Prints "listening <issuer>" once it serves. Accounts: {"<login>": {"email": ..., "name": ...,
// "groups": [...]}}, read again at every sign-in (a test changes someone's groups by rewriting
// the file); any password is accepted by the development login screen.
import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, redirectUri, accountsFile, host = "127.0.0.1"] = process.argv.slice(2);
const issuer = `http://${host}:${port}`;
const accounts = () => JSON.parse(readFileSync(accountsFile, "utf8"));

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "countersign",
      client_secret: "countersign-test-secret",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    },
  ],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["name", "preferred_username"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  pkce: { required: () => false },
  features: { devInteractions: { enabled: true } },
  // Claims in the ID token too, not only from userinfo: either way Countersign reads userinfo.
  conformIdTokenClaims: false,
  async findAccount(ctx, id) {
    const account = accounts()[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          email: account.email,
          email_verified: true,
          name: account.name,
          preferred_username: id,
          groups: account.groups || [],
        };
      },
    };
  },
});
provider.proxy = false;
provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening ${issuer}`);
});
