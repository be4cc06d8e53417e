#!/usr/bin/env node
// `bosun plugin build` for JavaScript: node build.mjs PLUGIN_DIR OUT.wasm WIT_DIR
//
// Stages the plugin's modules with this SDK (the `@bosun/sdk` specifier is rewritten to
// a relative path, so the plugin needs no node_modules of its own), adds an entry module
// that re-exports the world's functions, and componentizes it with componentize-qjs
// (QuickJS, non-async runtime). See README.md for why QuickJS.
import { cp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const sdkDir = dirname(fileURLToPath(import.meta.url));
const [pluginDir, outFile, witDir] = process.argv.slice(2).map((p) => resolve(p));
if (!pluginDir || !outFile || !witDir) {
  console.error('usage: node build.mjs PLUGIN_DIR OUT.wasm WIT_DIR');
  process.exit(2);
}

let componentize;
try {
  ({ componentize } = await import('componentize-qjs'));
} catch {
  console.error(`componentize-qjs is not installed: run \`npm ci\` in ${sdkDir}`);
  process.exit(1);
}

const pkg = JSON.parse(await readFile(join(pluginDir, 'package.json'), 'utf8'));
const main = pkg.main ?? 'plugin.js';
const world = pkg.bosun?.world ?? 'controller';
const stage = join(dirname(outFile), 'js-stage');
await rm(stage, { recursive: true, force: true });
await mkdir(stage, { recursive: true });
await cp(join(sdkDir, 'index.js'), join(stage, '__bosun_sdk.js'));

async function stageDir(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (['node_modules', 'target', '.git'].includes(entry.name)) continue;
    const from = join(dir, entry.name);
    if (entry.isDirectory()) {
      await stageDir(from);
    } else if (/\.m?js$/.test(entry.name)) {
      const to = join(stage, relative(pluginDir, from));
      await mkdir(dirname(to), { recursive: true });
      let rel = relative(dirname(to), join(stage, '__bosun_sdk.js')).split(sep).join('/');
      if (!rel.startsWith('.')) rel = './' + rel;
      const source = (await readFile(from, 'utf8')).replace(/(['"])@bosun\/sdk\1/g, `'${rel}'`);
      await writeFile(to, source);
    }
  }
}
await stageDir(pluginDir);

// componentize-qjs cannot link a world export named `init` (its runtime has a symbol of
// that name: "duplicate items detected"), so the staged WIT calls it `bosun-init` and
// `bosun plugin build` renames the component's export back to `init` afterwards.
const witStage = join(stage, 'wit');
await mkdir(witStage, { recursive: true });
for (const f of await readdir(witDir)) {
  if (!f.endsWith('.wit')) continue;
  const text = await readFile(join(witDir, f), 'utf8');
  await writeFile(join(witStage, f), text.replace(/export init: func\(/g, 'export bosun-init: func('));
}
const exportsOf = {
  controller: [['metadata', 'metadata'], ['bosunInit', 'init'], ['reconcile', 'reconcile']],
};
if (!exportsOf[world]) {
  console.error(`world ${world} is not supported by the JS SDK yet (controller only)`);
  process.exit(1);
}
const entry = [
  `import './${main.replace(/^\.\//, '')}';`,
  `import { world } from './__bosun_sdk.js';`,
  ...exportsOf[world].map(([f, g]) => `export function ${f}(...args) { return world.${g}(...args); }`),
].join('\n');
const entryPath = join(stage, '__bosun_entry.js');
await writeFile(entryPath, entry);

try {
  const { component } = await componentize({
    witPath: witStage,
    jsSource: entry,
    jsPath: entryPath,
    moduleRoot: stage,
    world,
    sync: true,
  });
  await writeFile(outFile, component);
} catch (e) {
  console.error(String(e?.stack ?? e));
  process.exit(1);
}
