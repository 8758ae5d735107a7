// The cache stand-in (see action.yml): one script for the main step (restore) and the post step
// (save), told apart by the state the main step leaves.
const { execFileSync } = require("child_process");
const fs = require("fs");
const path = require("path");
const os = require("os");

const root = process.env.UFFDC_REHEARSAL_CACHE;
if (!root) {
  console.error("the rehearsal stand-ins run under cargo xtask ci rehearse (UFFDC_REHEARSAL_CACHE is unset)");
  process.exit(1);
}
const input = (n) => (process.env[`INPUT_${n.toUpperCase()}`] || "").trim();
const lines = (s) => s.split("\n").map((l) => l.trim()).filter((l) => l);
const paths = lines(input("path")).map((p) =>
  path.resolve(process.env.GITHUB_WORKSPACE, p.replace(/^~(?=\/|$)/, os.homedir())));
const safe = (k) => k.replace(/[^A-Za-z0-9._-]/g, "_");
const entry = (k) => path.join(root, safe(k));
// The paths inside an entry: by their position in `path` (a change to `path` is a new key anyway).
const copy = (from, to) => {
  execFileSync("rm", ["-rf", to]);
  fs.mkdirSync(to, { recursive: true });
  execFileSync("cp", ["-a", "--reflink=auto", `${from}/.`, to]);
};

// The rehearsal's jobs run on one machine and share its home (act's self-hosted runner), and the
// matrix legs run at once: a folder under ~ is that shared home's, already warm and in use by the
// other jobs, so it is neither restored nor saved here.
const home = os.homedir();
const shared = (p) => p === home || p.startsWith(`${home}/`);
for (const p of paths.filter(shared)) console.log(`cache stand-in: ${p} is in the shared home; left as it is`);

if (process.env.STATE_restored === undefined) {
  const key = input("key");
  let hit = fs.existsSync(entry(key)) ? safe(key) : "";
  if (!hit) {
    const keys = fs.existsSync(root) ? fs.readdirSync(root) : [];
    for (const prefix of lines(input("restore-keys"))) {
      const newest = keys
        .filter((k) => k.startsWith(safe(prefix)) && !k.includes(".saving-"))
        .sort((a, b) => fs.statSync(entry(b)).mtimeMs - fs.statSync(entry(a)).mtimeMs)[0];
      if (newest) { hit = newest; break; }
    }
  }
  if (hit) {
    // Used now: the rehearsal evicts what goes unused, as GitHub does.
    const now = new Date();
    fs.utimesSync(path.join(root, hit), now, now);
    paths.forEach((p, i) => {
      const saved = path.join(root, hit, String(i));
      if (fs.existsSync(saved) && !shared(p)) copy(saved, p);
    });
    console.log(`cache stand-in: restored ${hit} for ${key}`);
  } else {
    console.log(`cache stand-in: no entry for ${key}`);
  }
  fs.appendFileSync(process.env.GITHUB_STATE, `restored=${hit === safe(key) ? "exact" : "no"}\n`);
  fs.appendFileSync(process.env.GITHUB_OUTPUT, `cache-hit=${hit === safe(key)}\n`);
} else if (process.env.STATE_restored !== "exact") {
  const key = input("key");
  // A key is saved once: where another job (a matrix leg beside this one) saved it first, this
  // save is dropped, as GitHub's cache service refuses to reserve a key twice.
  const taken = () => fs.existsSync(entry(key));
  if (taken()) {
    console.log(`cache stand-in: ${key} was saved by another job first; not saved again`);
  } else {
    const tmp = `${entry(key)}.saving-${process.pid}`;
    paths.forEach((p, i) => { if (fs.existsSync(p) && !shared(p)) copy(p, path.join(tmp, String(i))); });
    fs.mkdirSync(tmp, { recursive: true });
    try {
      if (taken()) throw new Error("taken");
      fs.renameSync(tmp, entry(key));
      console.log(`cache stand-in: saved ${key}`);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      console.log(`cache stand-in: ${key} was saved by another job first; not saved again`);
    }
  }
}
