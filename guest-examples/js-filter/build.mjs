// Builds the js-filter component with componentize-js (StarlingMonkey +
// wizer, all from node_modules; nothing is downloaded).
//
//   node build.mjs [OUT]    (default: js_filter.wasm)
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { componentize } from '@bytecodealliance/componentize-js';

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const out = process.argv[2] ?? here('./js_filter.wasm');

const { component } = await componentize({
  sourcePath: here('./src/filter.js'),
  witPath: here('../../wit'),
  worldName: 'transform-plugin',
  // The host gives guests no network: leave out fetch() and incoming HTTP,
  // so the component imports no wasi:http interface.
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
console.log(`wrote ${out} (${component.length} bytes)`);
