// Summarises an http-cache-tests results file the way cache-tests.fyi does (each test's
// dependencies honoured), prints the required / optimal / check counts and every required
// failure, and enforces the ratchet: the required pass count may not drop below the
// baseline recorded for this target.
//
// usage: node tests/conformance/summary.mjs RESULTS.json TARGET [--update]
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const suiteDir = path.join(here, '..', '..', 'node_modules', 'http-cache-tests')
const { default: suites } = await import(path.join(suiteDir, 'tests', 'index.mjs'))
const { default: surrogate } = await import(path.join(suiteDir, 'tests', 'surrogate-control.mjs'))
const display = await import(path.join(suiteDir, 'lib', 'display.mjs'))
if (!suites.includes(surrogate)) suites.push(surrogate)

const [resultsFile, target, flag] = process.argv.slice(2)
if (!resultsFile || !target) {
  console.error('usage: summary.mjs RESULTS.json TARGET [--update]')
  process.exit(2)
}
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const counts = {}
const requiredFailures = []
for (const suite of suites) {
  for (const test of suite.tests) {
    const kind = test.kind || 'required'
    const verdict = display.determineTestResult(suites, test.id, results)
    const c = counts[kind] || (counts[kind] = { pass: 0, fail: 0, dependency: 0, setup: 0, untested: 0 })
    if (verdict[2] === '✅' || verdict[2] === 'Y') c.pass++
    else if (verdict[2] === '⚪️') c.dependency++
    else if (verdict[2] === '🔹' || verdict[2] === '⁉️' || verdict[2] === '↻') {
      c.setup++
      if (kind === 'required') requiredFailures.push(`${test.id} (setup): ${JSON.stringify(results[test.id])}`)
    }
    else if (verdict[2] === '-') c.untested++
    else {
      c.fail++
      if (kind === 'required') {
        const detail = Array.isArray(results[test.id]) ? results[test.id].join(': ') : String(results[test.id])
        requiredFailures.push(`${test.id}: ${detail}`)
      }
    }
  }
}

for (const kind of ['required', 'optimal', 'check']) {
  const c = counts[kind]
  if (!c) continue
  const judged = c.pass + c.fail
  const attempted = judged + c.setup
  const pct = (n, d) => (d ? ((100 * n) / d).toFixed(1) : '0.0')
  console.log(`${target} ${kind}: ${c.pass}/${judged} passed (${pct(c.pass, judged)}%); ${c.pass}/${attempted} (${pct(c.pass, attempted)}%) counting ${c.setup} setup/harness failures as failures; ${c.dependency} not run (failed dependency)`)
}
if (requiredFailures.length) {
  console.log(`required failures (${requiredFailures.length}):`)
  for (const f of requiredFailures) console.log(`  ${f}`)
}

const baselineFile = path.join(here, 'baseline.json')
const baseline = fs.existsSync(baselineFile) ? JSON.parse(fs.readFileSync(baselineFile, 'utf8')) : {}
const required = counts.required.pass
if (flag === '--update') {
  baseline[target] = { required_pass: required, optimal_pass: counts.optimal?.pass || 0, check_pass: counts.check?.pass || 0 }
  fs.writeFileSync(baselineFile, JSON.stringify(baseline, null, 2) + '\n')
  console.log(`baseline for ${target} set to ${required} required passes`)
} else if (baseline[target] && required < baseline[target].required_pass) {
  console.error(`RATCHET: ${target} passes ${required} required tests, below the recorded ${baseline[target].required_pass}`)
  process.exit(1)
} else if (baseline[target]) {
  console.log(`ratchet ok: ${required} >= ${baseline[target].required_pass} recorded`)
}
