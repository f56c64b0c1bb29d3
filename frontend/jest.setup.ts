import '@testing-library/jest-dom';
import { TextDecoder, TextEncoder } from 'util';

// react-dom/server (pulled in by @grafana/ui) needs these; jsdom does not provide them.
Object.assign(global, { TextEncoder, TextDecoder });

// jsdom lacks these browser APIs; @grafana/ui's components touch them on mount.
Object.defineProperty(window, 'matchMedia', {
  writable: true,
  value: (query: string) => ({
    matches: false,
    media: query,
    onchange: null,
    addListener: () => undefined,
    removeListener: () => undefined,
    addEventListener: () => undefined,
    removeEventListener: () => undefined,
    dispatchEvent: () => false,
  }),
});

class NoopResizeObserver {
  observe() {}
  unobserve() {}
  disconnect() {}
}
Object.assign(window, { ResizeObserver: NoopResizeObserver });
