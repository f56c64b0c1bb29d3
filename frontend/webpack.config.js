// Builds dist/module.js the way Grafana loads plugin modules: one AMD module whose
// Grafana-provided packages are externals (Grafana hands its own copies to the loader).
const path = require('path');

const EXTERNALS = [
  'react',
  'react-dom',
  'react-redux',
  'redux',
  'react-router',
  'react-router-dom',
  '@grafana/data',
  '@grafana/ui',
  '@grafana/runtime',
  '@emotion/css',
  '@emotion/react',
  'lodash',
  'jquery',
  'moment',
  'rxjs',
  'd3',
  'slate',
  'slate-plain-serializer',
  'prismjs',
];

module.exports = (env, argv) => ({
  mode: argv.mode || 'production',
  context: __dirname,
  entry: { module: './src/module.ts' },
  devtool: argv.mode === 'development' ? 'eval-source-map' : 'source-map',
  output: {
    path: path.resolve(__dirname, 'dist'),
    filename: '[name].js',
    library: { type: 'amd' },
    publicPath: 'public/plugins/seed-inhouse-datasource/',
    clean: true,
  },
  externals: [
    ...EXTERNALS,
    // Subpaths of the above (rxjs/operators, lodash/get, …) are Grafana's too.
    ({ request }, callback) => {
      if (request && EXTERNALS.some((e) => request.startsWith(`${e}/`))) {
        return callback(undefined, request);
      }
      return callback();
    },
  ],
  resolve: { extensions: ['.ts', '.tsx', '.js', '.jsx'] },
  module: {
    rules: [
      {
        test: /\.[tj]sx?$/,
        exclude: /node_modules/,
        use: {
          loader: 'swc-loader',
          options: {
            jsc: {
              target: 'es2018',
              parser: { syntax: 'typescript', tsx: true },
              transform: { react: { runtime: 'classic' } },
            },
          },
        },
      },
    ],
  },
  performance: { hints: false },
});
