// Real-browser check of the BUILT dist/module.js: bundles a small Grafana stand-in (harness.tsx) with
// esbuild, serves it and dist/module.js on a local port, drives Debian's chromium with playwright-core,
// asserts on the DOM and saves screenshots to browser-test/out/.
import { build } from 'esbuild';
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
const out = path.join(here, 'out');
const moduleJs = path.join(root, 'dist', 'module.js');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

if (!existsSync(moduleJs)) {
  throw new Error(`${moduleJs} missing: run the webpack build first`);
}
mkdirSync(out, { recursive: true });

const t0 = Date.now();
await build({
  entryPoints: [path.join(here, 'harness.tsx')],
  bundle: true,
  outfile: path.join(out, 'harness.js'),
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  jsx: 'transform',
  minify: false,
  define: { 'process.env.NODE_ENV': '"production"', global: 'window' },
  loader: { '.svg': 'text', '.woff': 'empty', '.woff2': 'empty', '.png': 'empty' },
  logLevel: 'warning',
  plugins: [
    {
      // @grafana/runtime imports Grafana's SystemJS loader, which only the Grafana app provides; the
      // harness loads the plugin with its own AMD define instead.
      name: 'no-systemjs',
      setup(b) {
        b.onResolve({ filter: /^systemjs($|[/-])/ }, (a) => ({ path: a.path, namespace: 'empty' }));
        b.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({ contents: '', loader: 'js' }));
      },
    },
  ],
});
console.log(`harness bundled in ${Date.now() - t0} ms`);

// Grafana's own stylesheet styles the legacy gf-form classes DataSourceHttpSettings still uses; these few
// rules stand in for it so the screenshots look like Grafana, they are not part of the plugin.
const LEGACY_CSS = `<style>
.gf-form { display: flex; align-items: center; margin-bottom: 4px; }
.gf-form-inline { display: flex; flex-wrap: wrap; align-items: center; gap: 4px; }
.gf-form-group { margin-bottom: 24px; }
.gf-form-label { min-height: 32px; display: flex; align-items: center; padding: 0 8px; background: #22252b;
  border: 1px solid #2f3137; border-radius: 2px; font-size: 12px; font-weight: 500; margin-right: 4px; }
.gf-form-input { height: 32px; padding: 0 8px; background: #111217; color: #ccccdc; border: 1px solid #3d4047;
  border-radius: 2px; font-size: 14px; }
.width-10 { width: 80px; } .width-11 { width: 88px; } .width-13 { width: 104px; } .width-20 { width: 160px; }
.width-25 { width: 200px; } .width-30 { width: 240px; } .max-width-30 { max-width: 240px; }
.page-heading { font-size: 18px; margin: 16px 0 8px; }
</style>`;
const page404 = (res) => {
  res.writeHead(404);
  res.end();
};
const files = {
  '/': ['text/html', () => '<!doctype html><html><head><meta charset="utf-8"><title>harness</title>' + LEGACY_CSS +
    (existsSync(path.join(out, 'harness.css')) ? '<link rel="stylesheet" href="/harness.css">' : '') +
    '</head><body><div id="root"></div><script src="/harness.js"></script></body></html>'],
  '/harness.js': ['text/javascript', () => readFileSync(path.join(out, 'harness.js'))],
  '/harness.css': ['text/css', () => readFileSync(path.join(out, 'harness.css'))],
  '/module.js': ['text/javascript', () => readFileSync(moduleJs)],
};
// Icons @grafana/ui fetches at run time (Grafana serves them from public/).
const uiPublic = path.join(root, 'node_modules', '@grafana', 'ui', 'dist');
const server = createServer((req, res) => {
  const pathname = new URL(req.url, 'http://x').pathname;
  if (pathname.startsWith('/public/img/icons/') && pathname.endsWith('.svg') && !pathname.includes('..')) {
    const file = path.join(uiPublic, pathname);
    res.writeHead(200, { 'content-type': 'image/svg+xml' });
    // A few (spinner) live only in Grafana's own public/ folder: an empty icon stands in.
    return res.end(existsSync(file) ? readFileSync(file) : '<svg xmlns="http://www.w3.org/2000/svg"/>');
  }
  const f = files[pathname];
  if (!f) {
    return page404(res);
  }
  res.writeHead(200, { 'content-type': f[0] });
  res.end(f[1]());
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}`;

const browser = await chromium.launch({
  executablePath: chromiumPath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let passed = 0;
let page;
const check = async (name, fn) => {
  try {
    await fn();
  } catch (e) {
    console.log(`  FAIL ${name}`);
    await page?.screenshot({ path: path.join(out, 'failure.png'), fullPage: true });
    throw e;
  }
  passed++;
  console.log(`  ok  ${name}`);
};
const pageErrors = [];
try {
  page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  page.on('pageerror', (e) => pageErrors.push(e.stack || e.message));
  page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && pageErrors.push(m.text()));
  page.on('response', (r) => r.status() >= 400 && pageErrors.push(`${r.status()} ${r.url()}`));
  await page.goto(base + '/');
  await page
    .waitForFunction(() => window.harness && (window.harness.ready || window.harness.error), null, { timeout: 30000 })
    .catch((e) => {
      throw new Error(`harness did not start: ${e.message}\npage errors: ${pageErrors.join('\n')}`);
    });
  const err = await page.evaluate(() => window.harness.error);
  assert.equal(err, undefined, `harness failed: ${err}`);

  await check('module.js is AMD and imports only what Grafana provides', async () => {
    const deps = await page.evaluate(() => window.harness.deps);
    assert.ok(deps.includes('@grafana/data') && deps.includes('@grafana/ui') && deps.includes('react'), deps.join());
  });

  const config = page.locator('#config');
  await check('config editor: URL, timeout, auth, headers, TLS, OAuth and limits fields', async () => {
    await config.getByText('Skip TLS Verify').waitFor();
    const values = await config.locator('input').evaluateAll((els) => els.map((e) => e.value));
    const count = (v) => values.filter((x) => x === v).length;
    assert.equal(count('https://metrics.internal:8443'), 1, values.join('|'));
    for (const text of ['Timeout', 'Basic auth', 'With CA Cert', 'TLS Client Auth', 'Forward OAuth Identity',
      'Custom HTTP Headers', 'Max concurrent queries', 'Max connections', 'Max response bytes']) {
      assert.ok((await config.getByText(text, { exact: true }).count()) > 0, `missing "${text}"`);
    }
    assert.equal(count('X-Api-Key'), 1);
    assert.equal(count('30'), 1); // timeout
    // Secrets: shown as configured (basic auth password, header value, CA cert), never as content.
    assert.equal(count('configured'), 3);
    assert.equal(await page.locator('#inhouse-maxConnections').inputValue(), '64');
  });

  await check('config editor: a limit edit lands in jsonData', async () => {
    await page.locator('#inhouse-maxResponseBytes').fill('1048576');
    const state = JSON.parse(await page.locator('#config-state').textContent());
    assert.equal(state.jsonData.maxResponseBytes, 1048576);
    assert.equal(state.jsonData.maxConnections, 64);
  });
  await config.screenshot({ path: path.join(out, 'config-editor.png') });

  const query = page.locator('#query');
  await check('query editor: metric picker filled from the stubbed `metrics` resource', async () => {
    const metricInput = query.getByLabel('Metric', { exact: true });
    await metricInput.waitFor();
    // Wait for loading to finish (placeholder changes), then open the menu.
    await query.getByText('Select a metric').waitFor();
    await metricInput.click();
    await page.getByText('CPU utilisation', { exact: true }).waitFor();
    assert.equal(await page.getByText('Memory used', { exact: true }).count(), 1);
    const reqs = await page.evaluate(() => window.harness.requests);
    const metricsReq = reqs.find((r) => r.url.endsWith('/resources/metrics'));
    assert.ok(metricsReq, JSON.stringify(reqs));
    assert.equal(metricsReq.method, 'POST');
    assert.deepEqual(metricsReq.data, { metric: '', payload: {} });
  });

  await check('query editor: choosing a metric shows its payload fields', async () => {
    await page.getByText('CPU utilisation', { exact: true }).click();
    await query.getByLabel('Namespace', { exact: true }).waitFor();
    assert.equal(await query.getByLabel('Hosts', { exact: true }).count(), 1);
    assert.equal(await query.getByLabel('Filter', { exact: true }).count(), 1);
    const state = JSON.parse(await page.locator('#query-state').textContent());
    assert.deepEqual(state, { refId: 'A', target: 'cpu', payload: {}, hide: false });
  });

  await check('query editor: options from static list and from `metric-payload-options`', async () => {
    await query.getByLabel('Namespace', { exact: true }).click();
    await page.getByText('Database', { exact: true }).click();
    await query.getByLabel('Hosts', { exact: true }).click();
    await page.getByText('web-2', { exact: true }).click();
    await page.keyboard.press('Escape');
    await query.getByLabel('Filter', { exact: true }).fill('region=eu');
    await query.getByLabel('Filter', { exact: true }).blur();
    const state = JSON.parse(await page.locator('#query-state').textContent());
    assert.deepEqual(state, {
      refId: 'A',
      target: 'cpu',
      payload: { namespace: 'db', hosts: ['web-2'], filter: 'region=eu' },
      hide: false,
    });
    const reqs = await page.evaluate(() => window.harness.requests);
    const optReq = reqs.find((r) => r.url.endsWith('/resources/metric-payload-options'));
    assert.deepEqual(optReq.data, { metric: 'cpu', payload: { namespace: 'db' }, name: 'hosts' });
  });

  await check('query editor: raw JSON payload editor', async () => {
    await query.getByText('Raw payload', { exact: true }).click();
    const raw = query.getByLabel('Payload (JSON)', { exact: true });
    await raw.waitFor();
    assert.deepEqual(JSON.parse(await raw.inputValue()), { namespace: 'db', hosts: ['web-2'], filter: 'region=eu' });
  });
  await query.screenshot({ path: path.join(out, 'query-editor.png') });

  await check('no page errors', async () => {
    assert.deepEqual(pageErrors.filter((e) => !/Warning:/.test(e)), []);
  });
  console.log(`browser test: ${passed} checks passed; screenshots in ${path.relative(process.cwd(), out)}/`);
} finally {
  await browser.close();
  server.close();
}
