// Brings a fresh clone to a runnable state: pnpm (the pinned version), dependencies, and a build.
// `npm test` and `npm run demo` call it first, so the README's two commands work on a new machine.
import { execFileSync, execSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

const root = new URL('..', import.meta.url)
const pinned = JSON.parse(readFileSync(new URL('package.json', root), 'utf8')).packageManager.split('@')[1]
const run = (cmd) => execSync(cmd, { cwd: root, stdio: 'inherit' })

function pnpmVersion() {
  try {
    return execFileSync('pnpm', ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return null
  }
}

if (pnpmVersion() !== pinned) {
  console.log(`[setup] installing pnpm@${pinned}`)
  run(`npm install -g pnpm@${pinned}`)
}
run('pnpm install --frozen-lockfile --prefer-offline --reporter=silent')
run('pnpm run --silent build')
