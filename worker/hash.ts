const encoder = new TextEncoder();

/**
 * The hashes this isolate has computed: a returning visitor's contact is hashed for the log line
 * once, not on every request. Bounded: cleared when full.
 */
const hashed = new Map<string, string>();
const MAX_HASHED = 10_000;
const MEMO_BYTES = 16;

/** Each byte's two hex digits. */
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).padStart(2, "0"));

/**
 * SHA-256's constants (FIPS 180-4): the first 32 bits of the fractional parts of the square roots
 * of the first 8 primes (the initial hash) and of the cube roots of the first 64 (the round
 * constants), computed once rather than written out (test/unit/hash.test.ts checks the digests
 * against Web Crypto's).
 */
const PRIMES: number[] = [];
for (let n = 2; PRIMES.length < 64; n++) if (PRIMES.every((p) => n % p)) PRIMES.push(n);
const fraction = (x: number) => ((x - Math.floor(x)) * 2 ** 32) | 0;
const INITIAL = PRIMES.slice(0, 8).map((p) => fraction(Math.sqrt(p)));
const K = Int32Array.from(PRIMES, (p) => fraction(Math.cbrt(p)));
const W = new Int32Array(64);
const H = new Int32Array(8);
let buffer = new Uint8Array(128);
const ror = (x: number, n: number) => (x >>> n) | (x << (32 - n));

/**
 * The first 16 bytes of a value's SHA-256 (its UTF-8 bytes), in hex. In JavaScript rather than Web
 * Crypto: the values are short (an event's key and time, a contact), one or two blocks, and
 * `crypto.subtle.digest` costs a promise, an ArrayBuffer and a call into the runtime each, several
 * times the hash itself (docs/performance.md). Written here rather than taken from a library: the
 * well-kept one, @noble/hashes 2.4 (`bytesToHex(sha256(utf8ToBytes(v)))`), took 2.3–3.9× the time for
 * a 50-character value in Node (an object and two arrays a call) and bundles to 2,808 B gzip
 * against this file's 844. The same bytes as Web Crypto's, so the ledger's keys stay the same
 * across deployments.
 */
export function digestHex(value: string): string {
  // Room for every character as 3 UTF-8 bytes (a surrogate pair is 2 characters, 4 bytes), the 0x80 and the length.
  const most = value.length * 3 + 72;
  if (buffer.length < most) buffer = new Uint8Array(most * 2);
  const length = encoder.encodeInto(value, buffer).written as number;
  const blocks = (length + 72) >> 6;
  buffer.fill(0, length, blocks * 64);
  buffer[length] = 0x80;
  const bits = length * 8;
  const end = blocks * 64;
  buffer[end - 5] = bits / 2 ** 32;
  buffer[end - 4] = bits >>> 24;
  buffer[end - 3] = bits >>> 16;
  buffer[end - 2] = bits >>> 8;
  buffer[end - 1] = bits;
  H.set(INITIAL);
  for (let o = 0; o < end; o += 64) {
    for (let t = 0; t < 16; t++) {
      const i = o + t * 4;
      W[t] =
        ((buffer[i] as number) << 24) | ((buffer[i + 1] as number) << 16) | ((buffer[i + 2] as number) << 8) | (buffer[i + 3] as number);
    }
    for (let t = 16; t < 64; t++) {
      const x = W[t - 15] as number;
      const y = W[t - 2] as number;
      W[t] = (ror(x, 7) ^ ror(x, 18) ^ (x >>> 3)) + (W[t - 7] as number) + (ror(y, 17) ^ ror(y, 19) ^ (y >>> 10)) + (W[t - 16] as number);
    }
    let a = H[0] as number;
    let b = H[1] as number;
    let c = H[2] as number;
    let d = H[3] as number;
    let e = H[4] as number;
    let f = H[5] as number;
    let g = H[6] as number;
    let h = H[7] as number;
    for (let t = 0; t < 64; t++) {
      const t1 = (h + (ror(e, 6) ^ ror(e, 11) ^ ror(e, 25)) + ((e & f) ^ (~e & g)) + (K[t] as number) + (W[t] as number)) | 0;
      const t2 = ((ror(a, 2) ^ ror(a, 13) ^ ror(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    H[0] = (H[0] as number) + a;
    H[1] = (H[1] as number) + b;
    H[2] = (H[2] as number) + c;
    H[3] = (H[3] as number) + d;
    H[4] = (H[4] as number) + e;
    H[5] = (H[5] as number) + f;
    H[6] = (H[6] as number) + g;
    H[7] = (H[7] as number) + h;
  }
  let hex = "";
  for (let i = 0; i < MEMO_BYTES / 4; i++) {
    const x = H[i] as number;
    hex += (HEX[x >>> 24] as string) + HEX[(x >>> 16) & 255] + HEX[(x >>> 8) & 255] + HEX[x & 255];
  }
  return hex;
}

/**
 * The first `bytes` (at most 16) bytes of a value's SHA-256, in hex, remembered. Contacts leave
 * the isolate — to the ledger, to the logs — only as such hashes, and only after the answer or on
 * the rare request that waits for the ledger, so the hash is never on the common path.
 */
export function sha256Hex(value: string, bytes: number = MEMO_BYTES): string {
  let hex = hashed.get(value);
  if (!hex) {
    if (hashed.size >= MAX_HASHED) hashed.clear();
    hex = digestHex(value);
    hashed.set(value, hex);
  }
  return bytes === MEMO_BYTES ? hex : hex.slice(0, bytes * 2);
}
