// Summarises an http-cache-tests results file the way cache-tests.fyi does: each test's
// verdict comes from the suite's own determineTestResult (test-engine/lib/results.mjs, what
// the site's display.mjs uses), so a test whose dependency did not pass is "not run", and a
// Setup/retry/harness error is not a failure of the cache. Prints the required / optimal /
// check counts and every required failure, and enforces the ratchet: the required pass count
// may not drop below the baseline recorded for this target.
//
// usage: node tests/conformance/summary.mjs RESULTS.json TARGET [--update]
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const suiteDir = path.join(here, 'http-cache-tests')
// Every suite the cli runs (tests/index.mjs, which includes cdn-cache-control and interim;
// upstream removed surrogate-control in 2023).
const { default: suites } = await import(path.join(suiteDir, 'tests', 'index.mjs'))
const { determineTestResult, resultTypes } = await import(path.join(suiteDir, 'test-engine', 'lib', 'results.mjs'))

const [resultsFile, target, flag] = process.argv.slice(2)
if (!resultsFile || !target) {
  console.error('usage: summary.mjs RESULTS.json TARGET [--update]')
  process.exit(2)
}
const results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))

const counts = {}
const requiredFailures = []
const detail = id => (Array.isArray(results[id]) ? results[id].join(': ') : String(results[id]))
for (const suite of suites) {
  for (const test of suite.tests) {
    if (test.browser_only === true) continue // the cli never runs these (runner.mjs)
    const kind = test.kind || 'required'
    const verdict = determineTestResult(suites, test.id, results)
    const c = counts[kind] || (counts[kind] = { pass: 0, fail: 0, dependency: 0, setup: 0, untested: 0 })
    if (verdict === resultTypes.pass || verdict === resultTypes.yes) c.pass++
    else if (verdict === resultTypes.dependency_fail) c.dependency++
    else if (verdict === resultTypes.setup_fail || verdict === resultTypes.retry || verdict === resultTypes.harness_fail) {
      c.setup++
      const why = verdict === resultTypes.setup_fail ? 'setup' : verdict === resultTypes.retry ? 'retry' : 'harness'
      if (kind === 'required') requiredFailures.push(`${test.id} (${why}): ${detail(test.id)}`)
    } else if (verdict === resultTypes.untested) c.untested++
    else if (verdict === resultTypes.fail || verdict === resultTypes.optional_fail || verdict === resultTypes.no) {
      c.fail++
      if (kind === 'required') requiredFailures.push(`${test.id}: ${detail(test.id)}`)
    } else throw new Error(`unknown verdict ${JSON.stringify(verdict)} for ${test.id}`)
  }
}

for (const kind of ['required', 'optimal', 'check']) {
  const c = counts[kind]
  if (!c) continue
  const judged = c.pass + c.fail
  const attempted = judged + c.setup
  const pct = (n, d) => (d ? ((100 * n) / d).toFixed(1) : '0.0')
  console.log(`${target} ${kind}: ${c.pass}/${judged} passed (${pct(c.pass, judged)}%); ${c.pass}/${attempted} (${pct(c.pass, attempted)}%) counting ${c.setup} setup/harness failures as failures; ${c.dependency} not run (failed dependency)${c.untested ? `; ${c.untested} missing from the results` : ''}`)
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
