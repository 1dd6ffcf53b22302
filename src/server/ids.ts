/**
 * Resource ids and API keys. Ids are `<kind>_<time><random>` in lower-case Crockford base32: sortable
 * by creation time (list pages use them as cursors) and unguessable. API keys are
 * `olk_<8 chars>_<secret>`: the first 12 characters are the public prefix that finds the stored key,
 * the rest 32 random bytes; only the key's sha256 is stored.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

const B32 = '0123456789abcdefghjkmnpqrstvwxyz';

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/** A new id such as `adp_01jd3...`: 10 characters of milliseconds, then 16 random ones. */
export function newId(kind: 'usr' | 'key' | 'mdl' | 'adp' | 'ckp' | 'dst' | 'job' | 'evt' | 'obs'): string {
  let t = Date.now();
  let time = '';
  for (let i = 0; i < 10; i++) {
    time = B32[t % 32] + time;
    t = Math.floor(t / 32);
  }
  return `${kind}_${time}${base32(randomBytes(10))}`;
}

/** Length of an API key's public prefix (`olk_` + 8 characters). */
export const KEY_PREFIX_LENGTH = 12;

const KEY_PATTERN = /^olk_[0-9a-z]{8}_[A-Za-z0-9_-]{43}$/;

/** A new API key with its prefix and the hash to store. The key itself is shown once and never stored. */
export function generateApiKey(): { key: string; prefix: string; hash: string } {
  const prefix = `olk_${base32(randomBytes(5))}`;
  const key = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { key, prefix, hash: hashApiKey(key) };
}

/** sha256 hex of a key: enough for 256-bit random secrets (no salt or slow hash needed). */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key, 'utf8').digest('hex');
}

/** The lookup prefix of a string shaped like one of our keys, else null. */
export function apiKeyPrefix(key: string): string | null {
  return KEY_PATTERN.test(key) ? key.slice(0, KEY_PREFIX_LENGTH) : null;
}

/** Constant-time equality of two strings (compared through their sha256, so lengths leak nothing). */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash('sha256').update(a, 'utf8').digest();
  const hb = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(ha, hb);
}
