// node compare.mjs expected.arrow actual.arrow
// Exit 0 when apache-arrow decodes both to the same content; else prints
// every difference (path: expected vs actual) and exits 1.
import { isDeepStrictEqual } from 'node:util';
import { decodeFile } from './decode.mjs';

function diff(a, b, path, out) {
  if (isDeepStrictEqual(a, b)) return;
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) diff(a[k], b[k], `${path}.${k}`, out);
    return;
  }
  out.push(`${path}: expected ${JSON.stringify(a)} got ${JSON.stringify(b)}`);
}

const [expected, actual] = process.argv.slice(2);
const e = decodeFile(expected);
const a = decodeFile(actual);
delete e.batches; delete a.batches; // the SDK may split rows differently
const out = [];
diff(e, a, '$', out);
if (out.length) {
  console.log(`${out.length} differences between ${expected} and ${actual}:`);
  for (const l of out.slice(0, 50)) console.log('  ' + l);
  process.exit(1);
}
console.log(`same content: ${a.fields.length} fields, ${a.rows} rows`);
