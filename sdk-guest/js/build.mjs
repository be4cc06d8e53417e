#!/usr/bin/env node
// `bosun plugin build` for JavaScript: node build.mjs PLUGIN_DIR OUT.wasm WIT_DIR
//
// Stages the plugin's modules with this SDK (the `@bosun/sdk`, `@bosun/sdk/admission` and
// `@bosun/sdk/pod-agent` specifiers are rewritten to relative paths, so the plugin needs
// no node_modules of its own), checks that every WIT interface the plugin imports is one
// its world provides (naming the interface if not), adds an entry module that re-exports
// the world's functions, and componentizes it with componentize-qjs (QuickJS, non-async
// runtime). The world is package.json's `bosun.world`, else the SDK module the plugin
// imports. See README.md for why QuickJS.
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
const main = (pkg.main ?? 'plugin.js').replace(/^\.\//, '');
const stage = join(dirname(outFile), 'js-stage');
await rm(stage, { recursive: true, force: true });
await mkdir(join(stage, '__bosun_sdk'), { recursive: true });

// The SDK: one module per world over shared ones.
const sdkModules = { '': 'index.js', '/admission': 'admission.js', '/pod-agent': 'pod-agent.js' };
for (const f of ['common.js', 'cache.js', ...Object.values(sdkModules)]) {
  await cp(join(sdkDir, f), join(stage, '__bosun_sdk', f));
}
const worldOfModule = { '': 'controller', '/admission': 'admission', '/pod-agent': 'pod-agent' };

// Import specifiers of a module's source: static imports and re-exports, bare imports,
// dynamic imports with a literal.
function specifiers(source) {
  // Comments are not imports: block comments, and line comments that start a line.
  source = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const out = [];
  const patterns = [
    /\b(?:import|export)\s+[^'";]*?\bfrom\s*(['"])([^'"]+)\1/g,
    /\bimport\s*(['"])([^'"]+)\1/g,
    /\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g,
  ];
  for (const re of patterns) for (const m of source.matchAll(re)) out.push(m[2]);
  return out;
}

const plugin = []; // [relative path, source]
async function stageDir(dir) {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (['node_modules', 'target', '.git'].includes(entry.name)) continue;
    const from = join(dir, entry.name);
    if (entry.isDirectory()) {
      await stageDir(from);
    } else if (/\.m?js$/.test(entry.name)) {
      const rel = relative(pluginDir, from).split(sep).join('/');
      const to = join(stage, rel);
      await mkdir(dirname(to), { recursive: true });
      let source = await readFile(from, 'utf8');
      plugin.push([rel, source]);
      source = source.replace(/(['"])@bosun\/sdk(\/admission|\/pod-agent)?\1/g, (_, q, sub = '') => {
        let r = relative(dirname(to), join(stage, '__bosun_sdk', sdkModules[sub])).split(sep).join('/');
        if (!r.startsWith('.')) r = './' + r;
        return `'${r}'`;
      });
      await writeFile(to, source);
    }
  }
}
await stageDir(pluginDir);

// The world: declared, or the SDK module the plugin imports (one world per plugin).
const used = new Set();
for (const [, source] of plugin) {
  for (const spec of specifiers(source)) {
    const m = /^@bosun\/sdk(\/admission|\/pod-agent)?$/.exec(spec);
    if (m) used.add(worldOfModule[m[1] ?? '']);
  }
}
if (used.size > 1) {
  console.error(`the plugin imports the SDK modules of several worlds (${[...used].join(', ')}): a plugin implements one world`);
  process.exit(1);
}
const world = pkg.bosun?.world ?? [...used][0] ?? 'controller';
if (!['controller', 'admission', 'pod-agent'].includes(world)) {
  console.error(`package.json's bosun.world is ${JSON.stringify(world)}: the worlds are controller, admission and pod-agent`);
  process.exit(1);
}
if (used.size === 1 && !used.has(world)) {
  console.error(`package.json says the world is ${world}, but the plugin imports the SDK module of the ${[...used][0]} world`);
  process.exit(1);
}

// What the world imports, from the WIT: `bosun:operator/NAME@VERSION` for each `import NAME;`.
const witText = (await Promise.all((await readdir(witDir)).filter((f) => f.endsWith('.wit'))
  .map((f) => readFile(join(witDir, f), 'utf8')))).join('\n');
const pkgDecl = /^\s*package\s+([a-z0-9-]+:[a-z0-9-]+)(@[^;\s]+)?\s*;/m.exec(witText);
const worldBody = new RegExp(`\\bworld\\s+${world}\\s*\\{([^}]*)\\}`).exec(witText);
if (!pkgDecl || !worldBody) {
  console.error(`world ${world} is not in the contract (${witDir}): the worlds are controller, admission and pod-agent`);
  process.exit(1);
}
const provided = [...worldBody[1].matchAll(/^\s*import\s+([a-z0-9-]+)\s*;/gm)]
  .map((m) => `${pkgDecl[1]}/${m[1]}${pkgDecl[2] ?? ''}`);

// Every WIT-style import (`ns:pkg/iface...`) must be one the world provides; other bare
// specifiers (node:fs, npm packages) do not exist inside a component.
for (const [rel, source] of plugin) {
  for (const spec of specifiers(source)) {
    if (spec.startsWith('.') || spec.startsWith('/') || /^@bosun\/sdk(\/admission|\/pod-agent)?$/.test(spec)) continue;
    if (/^[a-z][a-z0-9-]*:[a-z][a-z0-9-]*\//.test(spec) && !spec.startsWith('node:')) {
      if (provided.includes(spec)) continue;
      const unversioned = provided.find((p) => p.split('@')[0] === spec);
      const hint = unversioned ? ` (write it with the contract's version: '${unversioned}')` : '';
      console.error(`${rel} imports the interface ${spec}, which the ${world} world does not provide${hint}; ` +
        `a ${world} plugin may import ${provided.join(', ')}`);
    } else {
      console.error(`${rel} imports '${spec}', which does not exist inside a plugin: ` +
        `only relative modules, @bosun/sdk (and /admission, /pod-agent) and the world's interfaces can be imported`);
    }
    process.exit(1);
  }
}

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
  admission: [['metadata', 'metadata'], ['bosunInit', 'init'], ['review', 'review']],
  'pod-agent': [
    ['metadata', 'metadata'], ['bosunInit', 'init'], ['onStart', 'onStart'], ['probe', 'probe'],
    ['onCommand', 'onCommand'], ['onStop', 'onStop'],
  ],
};
const sdkOf = { controller: 'index.js', admission: 'admission.js', 'pod-agent': 'pod-agent.js' };
const entry = [
  `import './${main}';`,
  `import { world } from './__bosun_sdk/${sdkOf[world]}';`,
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
  // componentize-qjs evaluates the modules at build time (a Wizer snapshot): a syntax
  // error, a missing export or a throw at the top level surfaces here, with QuickJS's
  // message and the file:line:column.
  const text = String(e?.message ?? e).replace(/^[:\s]+/, '').replace(/^Failed to evaluate user JavaScript module: /, '');
  console.error(`the plugin's JavaScript does not load: ${text}`);
  process.exit(1);
}
