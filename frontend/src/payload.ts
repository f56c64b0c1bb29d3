import { PayloadObject, PayloadValue } from './types';

export function isPlainObject(v: unknown): v is PayloadObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The payload as an object: an object as is, a string parsed as JSON; anything else (or bad JSON) gives undefined. */
export function payloadObject(payload: PayloadValue | undefined): PayloadObject | undefined {
  if (payload === undefined || payload === null || payload === '') {
    return {};
  }
  if (isPlainObject(payload)) {
    return payload;
  }
  if (typeof payload === 'string') {
    try {
      const parsed: unknown = JSON.parse(payload);
      return isPlainObject(parsed) ? parsed : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/**
 * Writes `next` back in the form the query already used: a query whose payload was a JSON string
 * keeps a JSON string, so dashboards saved by the JSON datasource plugins keep their shape.
 */
export function withPayloadShape(previous: PayloadValue | undefined, next: PayloadObject): PayloadValue {
  if (typeof previous === 'string') {
    return JSON.stringify(next);
  }
  return next;
}

/** The raw editor's text as a payload object, or what is wrong with it (shown under the editor). */
export function parsePayloadText(text: string): { payload: PayloadObject } | { error: string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { error: `The payload is not valid JSON: ${err instanceof Error ? err.message : String(err)}` };
  }
  return isPlainObject(parsed) ? { payload: parsed } : { error: 'The payload must be a JSON object.' };
}

/** Text for the raw editor. */
export function payloadText(payload: PayloadValue | undefined): string {
  if (payload === undefined || payload === null) {
    return '';
  }
  if (typeof payload === 'string') {
    return payload;
  }
  return JSON.stringify(payload, null, 2);
}

/** Applies `fn` to every string inside a JSON value (objects and arrays walked, other values kept). */
export function mapStrings(value: unknown, fn: (s: string) => string): unknown {
  if (typeof value === 'string') {
    return fn(value);
  }
  if (Array.isArray(value)) {
    return value.map((v) => mapStrings(v, fn));
  }
  if (isPlainObject(value)) {
    const out: PayloadObject = {};
    for (const [k, v] of Object.entries(value)) {
      out[k] = mapStrings(v, fn);
    }
    return out;
  }
  return value;
}
