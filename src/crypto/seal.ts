import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

/**
 * AES-256-GCM for secrets Keyport must be able to read back (a rotated key's secret until
 * it is revealed, webhook signing secrets). The key is derived from SECRET_KEY with HKDF
 * and a purpose label, so each use has its own key; every record gets a fresh 96-bit nonce.
 * Sealed form: `v1.<nonce>.<ciphertext+tag>` in base64url.
 */
export class Sealer {
  private readonly key: Buffer;
  constructor(secretKey: string, purpose: string) {
    this.key = Buffer.from(hkdfSync("sha256", secretKey, "keyport", `keyport:${purpose}`, 32));
  }

  seal(plaintext: string, associated = ""): string {
    const nonce = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, nonce);
    cipher.setAAD(Buffer.from(associated));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final(), cipher.getAuthTag()]);
    return `v1.${nonce.toString("base64url")}.${body.toString("base64url")}`;
  }

  /** Throws when the record was altered, moved to another row (associated data) or sealed with another key. */
  open(sealed: string, associated = ""): string {
    const [version, nonceText, bodyText] = sealed.split(".");
    if (version !== "v1" || !nonceText || !bodyText) throw new Error("not a sealed value");
    const body = Buffer.from(bodyText, "base64url");
    const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(nonceText, "base64url"));
    decipher.setAAD(Buffer.from(associated));
    decipher.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString("utf8");
  }
}
