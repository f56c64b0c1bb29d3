import { isPlainObject } from './payload';

/** A readable message from whatever postResource rejected with (FetchError, Error, string). */
export function errorMessage(err: unknown): string {
  if (typeof err === 'string') {
    return err;
  }
  if (isPlainObject(err)) {
    const data = err.data;
    if (isPlainObject(data)) {
      for (const key of ['message', 'error']) {
        const v = data[key];
        if (typeof v === 'string' && v !== '') {
          return v;
        }
      }
    }
    if (typeof data === 'string' && data !== '') {
      return data;
    }
    if (typeof err.message === 'string' && err.message !== '') {
      return err.message;
    }
    if (typeof err.statusText === 'string' && err.statusText !== '') {
      return `${err.status ?? ''} ${err.statusText}`.trim();
    }
    if (typeof err.status === 'number') {
      return `HTTP ${err.status}`;
    }
  }
  return 'unknown error';
}
