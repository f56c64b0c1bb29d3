// node roundtrip.mjs FRAME_CONVERT TMPDIR
// For every Grafana field type x nullable x {0, 1, many} rows (and one 10^6-row
// series), writes a JSON frame, has our C writer encode it as Arrow, decodes
// the result with apache-arrow and compares with what the JSON says.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import { decodeFile } from './decode.mjs';

const [conv, tmp] = process.argv.slice(2);

// base * k, unless that leaves the type's finite range.
const finite = (base, k, max) => (Math.abs(base * k) <= max ? base * k : base);

const TYPES = {
  int8: { arrow: 'int8', ts: 'number', gen: (i) => ((i * 37) % 256) - 128 },
  int16: { arrow: 'int16', ts: 'number', gen: (i) => ((i * 7919) % 65536) - 32768 },
  int32: { arrow: 'int32', ts: 'number', gen: (i) => (i % 2 ? -2147483648 : 2147483647) - (i % 3) * (i % 2 ? -1 : 1) },
  int64: { arrow: 'int64', ts: 'number', big: true, gen: (i) => [-9223372036854775808n, 9223372036854775807n, 0n, -1n][i % 4] + BigInt(i % 4 === 0 ? i : i % 4 === 1 ? -i : i) },
  uint8: { arrow: 'uint8', ts: 'number', gen: (i) => (i * 13) % 256 },
  uint16: { arrow: 'uint16', ts: 'number', gen: (i) => (i * 4099) % 65536 },
  uint32: { arrow: 'uint32', ts: 'number', gen: (i) => (4294967295 - i * 977) >>> 0 },
  uint64: { arrow: 'uint64', ts: 'number', big: true, gen: (i) => 18446744073709551615n - BigInt(i) * 1000003n },
  float32: { arrow: 'float32', ts: 'number', gen: (i) => finite([1.5, -2.25, 3.4028234663852886e38, 1.401298464324817e-45, 0][i % 5], i + 1, 3.4028234663852886e38) },
  float64: { arrow: 'float64', ts: 'number', gen: (i) => finite([Math.PI, -1e-300, 1.7976931348623157e308, 5e-324, 0.1][i % 5], i % 7 + 1, Number.MAX_VALUE) },
  bool: { arrow: 'bool', ts: 'boolean', gen: (i) => i % 3 === 0 },
  string: { arrow: 'utf8', ts: 'string', gen: (i) => ['', 'plain', 'quote " and \\ back', 'tab\tnew\nline', 'naïve ☃ 🦥', '\u0001ctl'][i % 6] + i },
  'time.Time': { arrow: 'timestamp[ns]', ts: 'time', big: true, gen: (i) => BigInt(1700000000000 + i * 1000) * 1000000n + BigInt(i % 1000) },
  'json.RawMessage': { arrow: 'binary', ts: 'other', gen: (i) => [{ a: i }, [1, 2, i], 'str' + i, null, { n: { m: [i] } }][i % 5] ?? { z: i } },
  enum: { arrow: 'uint16', ts: 'enum', gen: (i) => i % 4 },
};
const SPECIALS = ['NaN', '+Inf', '-Inf'];

// The JSON frame for one field, plus what apache-arrow must decode.
function build(goType, nullable, rows, labels, config) {
  const t = TYPES[goType];
  const values = [], expected = [], nanos = [];
  const entities = { NaN: [], Inf: [], NegInf: [] };
  let anyNanos = false;
  for (let i = 0; i < rows; i++) {
    if (nullable && i % 5 === 2) { values.push(null); expected.push(null); nanos.push(0); continue; }
    let v = t.gen(i);
    if ((goType === 'float32' || goType === 'float64') && i % 11 === 4) {
      const s = SPECIALS[i % 3];
      entities[s === 'NaN' ? 'NaN' : s === '+Inf' ? 'Inf' : 'NegInf'].push(i);
      values.push(null); expected.push(s); nanos.push(0); continue;
    }
    if (goType === 'time.Time') {
      const ms = v / 1000000n, rem = v % 1000000n;
      values.push(Number(ms)); nanos.push(Number(rem)); anyNanos ||= rem !== 0n;
      expected.push(v.toString()); continue;
    }
    nanos.push(0);
    if (t.big) { values.push(v); expected.push(v.toString()); continue; }
    if (goType === 'float32') { expected.push(Math.fround(v)); values.push(Math.fround(v)); continue; }
    if (goType === 'json.RawMessage') { values.push(v); expected.push(JSON.stringify(v)); continue; }
    values.push(v); expected.push(v);
  }
  const hasEntities = entities.NaN.length + entities.Inf.length + entities.NegInf.length > 0;
  const field = { name: `${goType}${nullable ? '_nullable' : ''}`, type: t.ts, typeInfo: { frame: goType, ...(nullable ? { nullable: true } : {}) } };
  if (labels) field.labels = labels;
  if (config) field.config = config;
  return { field, values, nanos: anyNanos ? nanos : null, entities: hasEntities ? entities : null, expected, t };
}

// BigInts must be written as bare JSON numbers.
function toJson(obj) {
  return JSON.stringify(obj, (k, v) => (typeof v === 'bigint' ? `@@${v}@@` : v)).replace(/"@@(-?\d+)@@"/g, '$1');
}

function frameCase(name, cols, { refId = 'A', meta } = {}) {
  const schema = { name, refId, fields: cols.map((c) => c.field) };
  if (meta) schema.meta = meta;
  const data = { values: cols.map((c) => c.values) };
  if (cols.some((c) => c.entities)) data.entities = cols.map((c) => c.entities);
  if (cols.some((c) => c.nanos)) data.nanos = cols.map((c) => c.nanos);
  const expect = {
    name, refId, meta,
    fields: cols.map((c) => ({
      name: c.field.name, type: c.t.arrow, nullable: !!c.field.typeInfo.nullable, tstype: c.t.ts,
      labels: c.field.labels, config: c.field.config, values: c.expected,
    })),
    rows: cols.length ? cols[0].expected.length : 0,
  };
  return { json: toJson({ schema, data }), expect };
}

function strip(o) { return JSON.parse(JSON.stringify(o)); } // drops undefined keys

let pass = 0, fail = 0, n = 0;
function run(label, fc) {
  const jsonPath = `${tmp}/rt${n}.json`, arrowPath = `${tmp}/rt${n++}.arrow`;
  writeFileSync(jsonPath, fc.json);
  try {
    execFileSync(conv, ['arrow', jsonPath, arrowPath], { stdio: 'pipe' });
    const got = decodeFile(arrowPath);
    delete got.batches;
    if (isDeepStrictEqual(strip(got), strip(fc.expect))) { pass++; return; }
    fail++;
    const g = strip(got), e = strip(fc.expect);
    const f = (e.fields || []).findIndex((x, i) => !isDeepStrictEqual(x, g.fields?.[i]));
    console.log(`FAIL ${label}: first differing field ${f}:\n  expected ${JSON.stringify(e.fields?.[f] ?? e).slice(0, 400)}\n  got      ${JSON.stringify(g.fields?.[f] ?? g).slice(0, 400)}`);
  } catch (err) {
    fail++;
    console.log(`FAIL ${label}: ${err.message.split('\n')[0]} ${err.stderr ?? ''}`);
  }
}

const labels = { 'host': 'a "quoted" \\ host', 'zone': 'zürich ☃', 'a': '' };
for (const goType of Object.keys(TYPES)) {
  for (const nullable of [false, true]) {
    for (const rows of [0, 1, 1000]) {
      const col = build(goType, nullable, rows, rows === 1 ? labels : undefined, rows === 1000 ? { unit: 'ms', displayName: 'x ☃' } : undefined);
      run(`${goType}${nullable ? '?' : ''} x ${rows}`, frameCase(`f_${goType}`, [col]));
    }
  }
}
// All types side by side in one frame, with meta.
const all = Object.keys(TYPES).flatMap((t) => [build(t, false, 37), build(t, true, 37)]);
run('all types in one frame', frameCase('all', all, { refId: 'Z', meta: { type: 'table', typeVersion: [0, 1], executedQueryString: 'q "x"' } }));
// Zero fields, and a 10^6-row time series.
run('zero fields', frameCase('empty', []));
const big = [build('time.Time', false, 1000000), build('float64', true, 1000000, { series: 'big' })];
run('10^6-row series', frameCase('big', big, { meta: { type: 'timeseries-multi', typeVersion: [0, 1] } }));
console.log(`round trips: ${pass} passed, ${fail} failed`);
process.exit(fail ? 1 : 0);
