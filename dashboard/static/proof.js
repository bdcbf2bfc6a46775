/* wattmesh dashboard: checking an inclusion proof in the browser, with Web Crypto only.
 *
 * Input: the JSON of GET /api/ledger/entries/{idx}/proof. The check trusts nothing the
 * server computed: it hashes the entry's bytes itself (RFC 9162 leaf hash
 * SHA-256(0x00 || entry)), folds the inclusion path (RFC 9162 section 2.1.3.2, a port of
 * broker/tlog.py verify_inclusion_hash; node hash SHA-256(0x01 || left || right)),
 * compares the result with the root the signed checkpoint text states, and verifies the
 * operator's ECDSA P-256 / SHA-256 signature over that text (the log stores DER; Web
 * Crypto takes the raw 64-byte r || s form). The operator key's id (SHA-256 of its DER
 * SubjectPublicKeyInfo, in hex) is recomputed and shown, so it can be compared with the
 * key one trusts.
 */
(function () {
  "use strict";

  const HASH_SIZE = 32;

  function b64ToBytes(text) {
    if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
      throw new Error("not base64");
    }
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function bytesToB64(bytes) {
    let bin = "";
    for (const b of bytes) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  function hexToBytes(hex) {
    if (typeof hex !== "string" || hex.length % 2 || !/^[0-9a-fA-F]*$/.test(hex)) {
      throw new Error("not hex");
    }
    const out = new Uint8Array(hex.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.substr(2 * i, 2), 16);
    return out;
  }

  function toHex(bytes) {
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function equal(a, b) {
    if (a.length !== b.length) return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
    return diff === 0;
  }

  async function sha256(parts) {
    let n = 0;
    for (const p of parts) n += p.length;
    const buf = new Uint8Array(n);
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.length;
    }
    return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
  }

  const leafHash = (entry) => sha256([Uint8Array.of(0), entry]);
  const nodeHash = (left, right) => sha256([Uint8Array.of(1), left, right]);

  /* RFC 9162 2.1.3.2; index and size in leaves. Returns the folded root, or null when the
   * path has the wrong length for (index, size). Plain arithmetic (not 32-bit bit ops),
   * so sizes up to 2^53 work. */
  async function foldInclusion(leaf, index, size, path) {
    if (!(Number.isSafeInteger(index) && Number.isSafeInteger(size)) || index < 0 || index >= size) {
      return null;
    }
    let fn = index;
    let sn = size - 1;
    let result = leaf;
    for (const sibling of path) {
      if (sn === 0 || sibling.length !== HASH_SIZE) return null;
      if (fn % 2 === 1 || fn === sn) {
        result = await nodeHash(sibling, result);
        while (fn !== 0 && fn % 2 === 0) {
          fn = Math.floor(fn / 2);
          sn = Math.floor(sn / 2);
        }
      } else {
        result = await nodeHash(result, sibling);
      }
      fn = Math.floor(fn / 2);
      sn = Math.floor(sn / 2);
    }
    return sn === 0 ? result : null;
  }

  /* The C2SP tlog-checkpoint note text "origin\nsize\nbase64(root)\n[extensions]" (as
   * broker/tlog.py parse_checkpoint_text); throws with the reason. */
  function parseCheckpointText(text) {
    if (typeof text !== "string" || !text.endsWith("\n")) throw new Error("it does not end with a newline");
    const lines = text.slice(0, -1).split("\n");
    if (lines.length < 3) throw new Error("it needs origin, tree size and root hash lines");
    const [origin, sizeLine, rootLine] = lines;
    if (!origin) throw new Error("its origin is empty");
    if (!/^(0|[1-9][0-9]*)$/.test(sizeLine)) throw new Error("its tree size is not a decimal number");
    const root = b64ToBytes(rootLine);
    if (root.length !== HASH_SIZE || bytesToB64(root) !== rootLine) throw new Error("its root is not a 32-byte hash");
    return { origin: origin, treeSize: Number(sizeLine), root: root };
  }

  /* DER ECDSA-Sig-Value (SEQUENCE of two INTEGERs) -> raw r || s, 32 bytes each. */
  function derToRaw(der) {
    let at = 0;
    function readLength() {
      let len = der[at++];
      if (len & 0x80) {
        const count = len & 0x7f;
        if (count < 1 || count > 2) throw new Error("bad DER length");
        len = 0;
        for (let i = 0; i < count; i++) len = len * 256 + der[at++];
      }
      return len;
    }
    function readInteger() {
      if (der[at++] !== 0x02) throw new Error("DER INTEGER expected");
      const len = readLength();
      if (len < 1 || at + len > der.length) throw new Error("bad DER INTEGER length");
      let value = der.subarray(at, at + len);
      at += len;
      while (value.length > 1 && value[0] === 0) value = value.subarray(1);
      if (value.length > 32) throw new Error("DER INTEGER longer than 32 bytes");
      const out = new Uint8Array(32);
      out.set(value, 32 - value.length);
      return out;
    }
    if (der[at++] !== 0x30) throw new Error("DER SEQUENCE expected");
    const total = readLength();
    if (at + total !== der.length) throw new Error("DER SEQUENCE length does not match");
    const r = readInteger();
    const s = readInteger();
    if (at !== der.length) throw new Error("trailing bytes after the DER signature");
    const raw = new Uint8Array(64);
    raw.set(r, 0);
    raw.set(s, 32);
    return raw;
  }

  function invalid(reason, steps) {
    return { valid: false, reason: reason, steps: steps };
  }

  /* Check a proof answer; resolves to {valid, reason, steps: [{name, ok, detail}], ...}. */
  async function checkProof(p) {
    const steps = [];
    const step = (name, ok, detail) => steps.push({ name: name, ok: ok, detail: detail });
    if (!window.crypto || !crypto.subtle) {
      return invalid("this browser has no Web Crypto (it needs a secure context: https or localhost)", steps);
    }
    let entry, path, statedRoot, signature, spki;
    try {
      entry = b64ToBytes(p.entry_b64);
      path = p.path_hex.map(hexToBytes);
      statedRoot = hexToBytes(p.root_hex);
      signature = b64ToBytes(p.signature_der_b64);
      spki = b64ToBytes(p.operator.public_key_spki_b64);
    } catch (err) {
      return invalid("the proof answer is malformed: " + err.message, steps);
    }
    const leaf = await leafHash(entry);
    const leafHex = toHex(leaf);
    if (p.leaf_hash_hex !== undefined && p.leaf_hash_hex !== leafHex) {
      step("leaf hash", false, "SHA-256(0x00 || entry) = " + leafHex + ", the answer says " + p.leaf_hash_hex);
      return invalid("the entry's bytes do not hash to the stated leaf hash", steps);
    }
    step("leaf hash", true, "SHA-256(0x00 || entry) = " + leafHex);
    let cp;
    try {
      cp = parseCheckpointText(p.checkpoint_text);
    } catch (err) {
      step("checkpoint text", false, err.message);
      return invalid("the checkpoint text is malformed: " + err.message, steps);
    }
    if (cp.treeSize !== p.tree_size) {
      step("checkpoint text", false, "states " + cp.treeSize + " entries, the proof is for " + p.tree_size);
      return invalid("the checkpoint is for another tree size than the proof", steps);
    }
    if (!equal(cp.root, statedRoot)) {
      step("checkpoint text", false, "its root " + toHex(cp.root) + " differs from root_hex " + p.root_hex);
      return invalid("the checkpoint's root differs from the stated root", steps);
    }
    step("checkpoint text", true, cp.origin + ", " + cp.treeSize + " entries, root " + toHex(cp.root));
    const folded = await foldInclusion(leaf, p.idx, p.tree_size, path);
    if (folded === null) {
      step("inclusion path", false, path.length + " hashes do not fit entry " + p.idx + " of " + p.tree_size);
      return invalid("the inclusion path has the wrong shape for this entry and tree size", steps);
    }
    if (!equal(folded, cp.root)) {
      step("inclusion path", false, "folds to " + toHex(folded) + ", not the checkpoint's root");
      return invalid("the inclusion path does not lead to the checkpoint's root", steps);
    }
    step("inclusion path", true, path.length + " hashes fold to the checkpoint's root");
    const kid = toHex(await sha256([spki]));
    if (p.operator.kid !== undefined && p.operator.kid !== kid) {
      step("operator key", false, "SHA-256 of the key is " + kid + ", the answer names " + p.operator.kid);
      return invalid("the operator key does not match its key id", steps);
    }
    let key, raw;
    try {
      key = await crypto.subtle.importKey("spki", spki, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    } catch (err) {
      step("operator key", false, String(err && err.message));
      return invalid("the operator key is not an ECDSA P-256 public key", steps);
    }
    step("operator key", true, "ECDSA P-256, key id " + kid);
    try {
      raw = derToRaw(signature);
    } catch (err) {
      step("signature", false, err.message);
      return invalid("the checkpoint signature is not a DER ECDSA signature: " + err.message, steps);
    }
    const text = new TextEncoder().encode(p.checkpoint_text);
    const ok = await crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, raw, text);
    if (!ok) {
      step("signature", false, "ECDSA P-256 / SHA-256 over the checkpoint text fails");
      return invalid("the checkpoint signature does not verify with the operator's key", steps);
    }
    step("signature", true, "the operator signed this checkpoint");
    return {
      valid: true,
      reason: "entry " + p.idx + " is in the log of " + cp.treeSize + " entries whose checkpoint the operator signed",
      steps: steps,
      kid: kid,
      origin: cp.origin,
    };
  }

  window.WMProof = {
    checkProof: checkProof,
    derToRaw: derToRaw,
    foldInclusion: foldInclusion,
    parseCheckpointText: parseCheckpointText,
    leafHash: leafHash,
    toHex: toHex,
    b64ToBytes: b64ToBytes,
  };
})();
