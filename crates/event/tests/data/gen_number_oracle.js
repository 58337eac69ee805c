#!/usr/bin/env node
// Writes number_tostring.txt: ECMAScript Number#toString (node's own `String(x)`, the reference for
// RFC 8785 §3.2.2.3 number serialization) for a fixed set of doubles. The tests read that file, so
// `cargo test` needs no node; only regenerating it does:
//
//   node crates/event/tests/data/gen_number_oracle.js > crates/event/tests/data/number_tostring.txt
//
// The output is deterministic (no Math.random): the same node gives the same bytes. Each data line
// is `<IEEE-754 bits, 16 lowercase hex digits> <String(x)>`; lines starting with `#` are comments,
// and `# values: N` states how many data lines follow (the test checks it).
//
// Inputs:
// 1. Edge cases: ±0, subnormals, the normal/subnormal boundary, ±max, every power of two, every
//    power of ten with both neighbouring doubles (this covers the ES format switches at 1e21 and
//    1e-7), integers around 2^53, RFC 8785 Appendix B, and a few classic decimals.
// 2. The first RANDOM_COUNT doubles of the splitmix64 sequence that jcs_vectors.rs uses (same seed,
//    same four shapes: raw bit patterns, values near integers, raw bit patterns mod 1e22 and
//    values near powers of ten). `powi` reproduces Rust's `f64::powi` (compiler-builtins'
//    `__powidf2`: square-and-multiply, reciprocal for negative exponents) bit for bit, so these
//    are exactly the values the Rust generator produces.
'use strict';

const RANDOM_COUNT = 6000;
const M64 = (1n << 64n) - 1n;
const buf = Buffer.alloc(8);

function fromBits(bits) {
  buf.writeBigUInt64BE(bits & M64);
  return buf.readDoubleBE(0);
}

function toBits(x) {
  buf.writeDoubleBE(x);
  return buf.readBigUInt64BE(0);
}

// The next double towards +infinity / -infinity (for finite, non-zero-crossing x).
function nextUp(x) {
  if (x === 0) return fromBits(1n);
  const b = toBits(x);
  return fromBits(x > 0 ? b + 1n : b - 1n);
}

function nextDown(x) {
  return -nextUp(-x);
}

function powi(a, b) {
  const recip = b < 0;
  let pow = Math.abs(b);
  let mul = 1;
  for (;;) {
    if (pow & 1) mul *= a;
    pow >>>= 1;
    if (pow === 0) break;
    a *= a;
  }
  return recip ? 1 / mul : mul;
}

function edgeCases() {
  const out = [0, -0];
  // Subnormals: the smallest few, some in the middle, the largest; then the smallest normals.
  for (const k of [1n, 2n, 3n, 4n, 5n, 9n, 10n, 0x1234n, 0x8000000000000n, 0xfffffffffffffn]) {
    out.push(fromBits(k), -fromBits(k));
  }
  const minNormal = fromBits(0x0010000000000000n);
  out.push(minNormal, nextUp(minNormal), -minNormal);
  out.push(Number.MAX_VALUE, -Number.MAX_VALUE, nextDown(Number.MAX_VALUE));
  // Integers around 2^53 and other powers of two where integer formatting ends.
  for (const v of [2 ** 53, 2 ** 63, 2 ** 64, 2 ** 69, 2 ** 70]) {
    out.push(nextDown(v), v, nextUp(v));
  }
  out.push(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER - 2);
  // Every power of two (asymmetric rounding intervals: the hard case for shortest digits).
  for (let e = -1074; e <= 1023; e++) out.push(2 ** e);
  // Every power of ten that is a finite non-zero double, with both neighbours, and its negation.
  for (let e = -323; e <= 308; e++) {
    const p = Number('1e' + e);
    out.push(nextDown(p), p, nextUp(p), -p);
  }
  // Around the ES format switches: 21 integer digits, 1e-6 / 1e-7.
  out.push(
    123456789012345680000, 1.2345678901234568e21, 999999999999999900000, 1e21 - 65536,
    0.000001, 0.0000012345, 1.2345e-7, 9.999999999999999e-7, 0.1234567, 1e-7 * 1.5,
  );
  // RFC 8785 Appendix B.
  for (const h of [
    '0000000000000000', '8000000000000000', '0000000000000001', '8000000000000001',
    '7fefffffffffffff', 'ffefffffffffffff', '4340000000000000', 'c340000000000000',
    '4430000000000000', '44b52d02c7e14af5', '44b52d02c7e14af6', '44b52d02c7e14af7',
    '444b1ae4d6e2ef4e', '444b1ae4d6e2ef4f', '444b1ae4d6e2ef50', '3eb0c6f7a0b5ed8c',
    '3eb0c6f7a0b5ed8d', '41b3de4355555553', '41b3de4355555554', '41b3de4355555555',
    '41b3de4355555556', '41b3de4355555557', 'becbf647612f3696', '43143ff3c1cb0959',
  ]) {
    out.push(fromBits(BigInt('0x' + h)));
  }
  // Classic decimals and small integers.
  out.push(0.1, 0.2, 0.3, 0.1 + 0.2, 1 / 3, 2 / 3, Math.PI, Math.E, 4.5, 0.002, 1e30, 1e-27);
  for (let i = 1; i <= 20; i++) out.push(i, -i, i / 10, i * 1000000);
  return out;
}

// The generator of jcs_vectors.rs's `es_algorithm` test, element for element.
function splitmixValues(count) {
  let state = 0x9e3779b97f4a7c15n;
  const next = () => {
    state = (state + 0x9e3779b97f4a7c15n) & M64;
    let z = state;
    z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & M64;
    z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & M64;
    return z ^ (z >> 31n);
  };
  const values = [];
  while (values.length < count) {
    const r = next();
    let f;
    switch (values.length % 4) {
      case 0:
        f = fromBits(r);
        break;
      case 1:
        f = Number(r >> 11n) / 2 ** 20;
        break;
      case 2:
        f = fromBits(r) % 1e22;
        break;
      default:
        f = powi(10, Number(r % 40n) - 20) * (1 + Number(r >> 40n) / 1e7);
    }
    if (Number.isFinite(f)) values.push(f);
  }
  return values;
}

const seen = new Set();
const lines = [];
for (const x of [...edgeCases(), ...splitmixValues(RANDOM_COUNT)]) {
  if (!Number.isFinite(x)) throw new Error(`not finite: ${x}`);
  const hex = toBits(x).toString(16).padStart(16, '0');
  if (seen.has(hex)) continue;
  seen.add(hex);
  lines.push(`${hex} ${String(x)}`);
}
process.stdout.write(
  '# ECMAScript Number#toString of IEEE-754 doubles: <bits as hex> <String(x)>.\n' +
    `# Generated by gen_number_oracle.js with node ${process.version}; do not edit by hand.\n` +
    `# values: ${lines.length}\n` +
    lines.join('\n') +
    '\n',
);
