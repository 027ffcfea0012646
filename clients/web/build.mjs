// Build the pages into a directory (default: backend/static): the game's page (index.html,
// app.js from src/main.ts and the @roundtable/client it imports, style.css) and the operators'
// page (admin.html, admin.js from src/admin.ts, admin.css), each bundled by esbuild. Each page
// names its files with a content hash so a browser never runs a stale bundle. Same input, same
// bytes: `make web-check` builds into a temporary directory and compares with the committed files.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] ?? resolve(here, "../../backend/static"));

async function bundle(entry) {
  const result = await build({
    absWorkingDir: here,
    entryPoints: [entry],
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
  return result.outputFiles[0].contents;
}

const version = (bytes) => createHash("sha256").update(bytes).digest("hex").slice(0, 12);
const files = {
  "app.js": await bundle("src/main.ts"),
  "admin.js": await bundle("src/admin.ts"),
  "style.css": await readFile(resolve(here, "src/style.css")),
  "admin.css": await readFile(resolve(here, "src/admin.css")),
};
const pages = { "index.html": ["app.js", "style.css"], "admin.html": ["admin.js", "style.css", "admin.css"] };

await mkdir(out, { recursive: true });
for (const [page, names] of Object.entries(pages)) {
  let html = await readFile(resolve(here, "src", page), "utf8");
  for (const name of names) {
    const reference = `"/static/${name}"`;
    if (!html.includes(reference)) throw new Error(`src/${page} does not load ${reference}`);
    html = html.replace(reference, `"/static/${name}?v=${version(files[name])}"`);
  }
  await writeFile(resolve(out, page), html);
}
for (const [name, bytes] of Object.entries(files)) await writeFile(resolve(out, name), bytes);
console.log(`built ${out}: app.js ${files["app.js"].length} bytes, admin.js ${files["admin.js"].length} bytes`);
