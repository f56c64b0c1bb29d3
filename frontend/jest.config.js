// Jest in jsdom. Some of @grafana/ui's dependencies ship only ES modules: those are transformed too.
const esmOnly = ['ol', 'd3', 'd3-[a-z-]+', 'internmap', 'delaunator', 'robust-predicates', 'marked', 'rbush', 'quickselect',
  'earcut', 'pbf', 'color-(space|parse|rgba|name)', 'react-calendar', '@wojtekmaj', 'get-user-locale', 'memoize', 'mimic-function',
  'uuid', 'react-colorful', '@grafana/schema'];

module.exports = {
  testEnvironment: 'jsdom',
  roots: ['<rootDir>/src'],
  setupFilesAfterEnv: ['<rootDir>/jest.setup.ts'],
  transform: {
    '^.+\\.(m?js|jsx|tsx?)$': [
      '@swc/jest',
      { jsc: { parser: { syntax: 'typescript', tsx: true }, transform: { react: { runtime: 'classic' } } } },
    ],
  },
  transformIgnorePatterns: [`node_modules/(?!(${esmOnly.join('|')})/)`],
  moduleNameMapper: { '\\.(css|scss|svg)$': '<rootDir>/src/__mocks__/style.js' },
};
