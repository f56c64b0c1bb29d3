import { MetricFindValue } from '@grafana/data';
import { isPlainObject } from './payload';

function scalarText(v: unknown): string | undefined {
  if (typeof v === 'string') {
    return v;
  }
  if (typeof v === 'number' || typeof v === 'boolean') {
    return String(v);
  }
  return undefined;
}

function fromItem(item: unknown): MetricFindValue | undefined {
  const s = scalarText(item);
  if (s !== undefined) {
    return { text: s, value: s };
  }
  if (!isPlainObject(item)) {
    return undefined;
  }
  const text = scalarText(item.__text ?? item.text ?? item.label);
  const value = scalarText(item.__value ?? item.value);
  if (text === undefined && value === undefined) {
    return undefined;
  }
  return { text: text ?? value ?? '', value: value ?? text };
}

/** A table `{columns, rows}`: first column is the text, a second (if any) the value. */
function fromTable(t: Record<string, unknown>): MetricFindValue[] {
  const rows = Array.isArray(t.rows) ? t.rows : [];
  const out: MetricFindValue[] = [];
  for (const row of rows) {
    if (!Array.isArray(row)) {
      continue;
    }
    const text = scalarText(row[0]);
    if (text === undefined) {
      continue;
    }
    out.push({ text, value: row.length > 1 ? scalarText(row[1]) ?? text : text });
  }
  return out;
}

/** A data frame `{fields:[{name, values}]}`: `__text`/`__value` fields if present, else first field (and second as value). */
function fromFrame(f: Record<string, unknown>): MetricFindValue[] {
  const fields = (Array.isArray(f.fields) ? f.fields : []).filter(isPlainObject);
  if (fields.length === 0) {
    return [];
  }
  const byName = (n: string) => fields.find((x) => x.name === n);
  const textField = byName('__text') ?? byName('text') ?? fields[0];
  const valueField = byName('__value') ?? byName('value') ?? (fields.length > 1 && !byName('__text') ? fields[1] : textField);
  const texts = Array.isArray(textField.values) ? textField.values : [];
  const values = Array.isArray(valueField.values) ? valueField.values : texts;
  const out: MetricFindValue[] = [];
  texts.forEach((t, i) => {
    const text = scalarText(t);
    if (text !== undefined) {
      out.push({ text, value: scalarText(values[i]) ?? text });
    }
  });
  return out;
}

/**
 * The `variable` endpoint answers `[{__text, __value}]` (or `text`/`value`, or plain strings), a data frame,
 * or a table; an array may hold frames/tables too.
 */
export function toMetricFindValues(answer: unknown): MetricFindValue[] {
  if (isPlainObject(answer)) {
    if (Array.isArray(answer.fields)) {
      return fromFrame(answer);
    }
    if (Array.isArray(answer.rows)) {
      return fromTable(answer);
    }
    return [];
  }
  if (!Array.isArray(answer)) {
    return [];
  }
  const out: MetricFindValue[] = [];
  for (const item of answer) {
    if (isPlainObject(item) && Array.isArray(item.fields)) {
      out.push(...fromFrame(item));
    } else if (isPlainObject(item) && Array.isArray(item.rows)) {
      out.push(...fromTable(item));
    } else {
      const v = fromItem(item);
      if (v) {
        out.push(v);
      }
    }
  }
  return out;
}
