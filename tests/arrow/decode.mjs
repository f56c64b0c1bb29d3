// Decodes Arrow IPC *files* with apache-arrow (a decoder we did not write)
// into a normalized JSON description: frame metadata, per field the Arrow
// type, nullability, metadata and every value. 64-bit integers and
// timestamps are exact decimal strings; non-finite floats are strings.
import { readFileSync } from 'node:fs';
import { RecordBatchFileReader, Type } from 'apache-arrow';

function parseMaybeJson(s) {
  if (s === undefined) return undefined;
  try { return JSON.parse(s); } catch { return { unparsable: s }; }
}

function normFloat(v) {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Object.is(v, -0)) return '-0';
  return v;
}

function typeName(t) {
  switch (t.typeId) {
    case Type.Int: return `${t.isSigned ? 'int' : 'uint'}${t.bitWidth}`;
    case Type.Float: return ['float16', 'float32', 'float64'][t.precision];
    case Type.Bool: return 'bool';
    case Type.Utf8: return 'utf8';
    case Type.Binary: return 'binary';
    case Type.Timestamp: return `timestamp[${['s', 'ms', 'us', 'ns'][t.unit]}${t.timezone ? ',' + t.timezone : ''}]`;
    default: return `unsupported(${t.typeId})`;
  }
}

// Raw little-endian read of a 64-bit slot: exact, whatever arrow's get() returns.
function raw64(data, i, signed) {
  const v = data.values;
  const idx = data.offset + i;
  if (v instanceof BigInt64Array || v instanceof BigUint64Array)
    return (signed ? BigInt.asIntN(64, v[idx]) : BigInt.asUintN(64, v[idx])).toString();
  const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
  const x = dv.getBigUint64(idx * 8, true);
  return (signed ? BigInt.asIntN(64, x) : x).toString();
}

export function decodeFile(path) {
  const bytes = readFileSync(path);
  const reader = RecordBatchFileReader.from(bytes);
  reader.open();
  const schema = reader.schema;
  const batches = [...reader];
  const md = schema.metadata;
  const out = {
    name: md.get('name'),
    refId: md.get('refId'),
    meta: parseMaybeJson(md.get('meta')),
    batches: batches.length,
    fields: [],
  };
  schema.fields.forEach((f, fi) => {
    const fm = f.metadata;
    const field = {
      name: f.name,
      type: typeName(f.type),
      nullable: f.nullable,
      tstype: fm.get('tstype'),
      labels: parseMaybeJson(fm.get('labels')),
      config: parseMaybeJson(fm.get('config')),
      values: [],
    };
    for (const b of batches) {
      const data = b.data.children[fi];
      const vec = b.getChildAt(fi);
      for (let i = 0; i < b.numRows; i++) {
        if (f.nullable && !vec.isValid(i)) { field.values.push(null); continue; }
        const t = f.type;
        let v;
        if (t.typeId === Type.Int && t.bitWidth === 64) v = raw64(data, i, t.isSigned);
        else if (t.typeId === Type.Timestamp) v = raw64(data, i, true);
        else if (t.typeId === Type.Float) v = normFloat(vec.get(i));
        else if (t.typeId === Type.Binary) v = Buffer.from(vec.get(i)).toString('utf8');
        else v = vec.get(i);
        field.values.push(v);
      }
    }
    out.fields.push(field);
  });
  out.rows = batches.reduce((n, b) => n + b.numRows, 0);
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const p of process.argv.slice(2)) process.stdout.write(JSON.stringify(decodeFile(p)) + '\n');
}
