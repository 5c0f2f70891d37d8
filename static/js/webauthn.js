/* Passkeys in the browser: the server's WebAuthn options (JSON, base64url) to what
 * navigator.credentials wants (ArrayBuffers), and the credential back to JSON for the server
 * (approvals/services/passkeys.py reads it with py_webauthn). Used by the profile page
 * (passkeys.js) and by the dashboard's step-up (decide_rules.js).
 */
(() => {
  "use strict";

  function toBuffer(text) {
    const base64 = String(text).replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = atob(padded);
    const out = new Uint8Array(bytes.length);
    for (let i = 0; i < bytes.length; i += 1) out[i] = bytes.charCodeAt(i);
    return out.buffer;
  }

  function toText(buffer) {
    if (!buffer) return null;
    const bytes = new Uint8Array(buffer);
    let binary = "";
    for (const b of bytes) binary += String.fromCharCode(b);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  const descriptors = (list) => (list || []).map((c) => ({ ...c, id: toBuffer(c.id) }));

  function creationOptions(json) {
    return {
      ...json,
      challenge: toBuffer(json.challenge),
      user: { ...json.user, id: toBuffer(json.user.id) },
      excludeCredentials: descriptors(json.excludeCredentials),
    };
  }

  function requestOptions(json) {
    return { ...json, challenge: toBuffer(json.challenge), allowCredentials: descriptors(json.allowCredentials) };
  }

  // Written out rather than credential.toJSON(): older browsers lack it, and the server wants
  // exactly these keys.
  function credentialJSON(credential) {
    const r = credential.response;
    const response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      if (typeof r.getTransports === "function") response.transports = r.getTransports();
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
    };
  }

  const supported = () => Boolean(window.PublicKeyCredential && navigator.credentials);

  window.Countersign = window.Countersign || {};
  window.Countersign.webauthn = {
    supported,
    async create(options) {
      return credentialJSON(await navigator.credentials.create({ publicKey: creationOptions(options) }));
    },
    async get(options) {
      return credentialJSON(await navigator.credentials.get({ publicKey: requestOptions(options) }));
    },
  };
})();
