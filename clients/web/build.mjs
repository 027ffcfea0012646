// Build the page into a directory (default: backend/static): app.js (src/main.ts and the
// @roundtable/client it imports, bundled by esbuild), style.css and index.html, which names
// both with a content hash so a browser never runs a stale bundle. Same input, same bytes:
// `make web-check` builds into a temporary directory and compares with the committed files.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "../../backend/static"));

const result = await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2022"],
  minify: true,
  legalComments: "none",
  charset: "utf8",
  write: false,
  logLevel: "warning",
});
const [bundle] = result.outputFiles;
const js = bundle.contents;
const css = await readFile(resolve(here, "src/style.css"));
const version = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 12);

let html = await readFile(resolve(here, "src/index.html"), "utf8");
for (const [name, bytes] of [["app.js", js], ["style.css", css]]) {
  const reference = `"/static/${name}"`;
  if (!html.includes(reference)) throw new Error(`src/index.html does not load ${reference}`);
  html = html.replace(reference, `"/static/${name}?v=${version(bytes)}"`);
}

await mkdir(out, { recursive: true });
await writeFile(resolve(out, "app.js"), js);
await writeFile(resolve(out, "style.css"), css);
await writeFile(resolve(out, "index.html"), html);
console.log(`built ${out}: app.js ${js.length} bytes`);
