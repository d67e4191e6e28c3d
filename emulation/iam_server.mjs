// One long-lived evaluator per test session: a JSON request per line on stdin, a JSON answer per
// line on stdout. Each request is an @cloud-copilot/iam-simulate Simulation plus an "id".
// Runs only in tests (emulation/authorization.py starts it); never shipped.
import { createInterface } from 'node:readline'
import { loadPolicy } from '@cloud-copilot/iam-policy'
import { runSimulation } from '@cloud-copilot/iam-simulate'
// Not in the package's exports: the engine's own entry points, for the requests runSimulation cannot
// take (below). Paths relative to this file, pinned by package-lock.json.
import { authorize } from '../node_modules/@cloud-copilot/iam-simulate/dist/esm/core_engine/CoreSimulatorEngine.js'
import { DiscoveryContextKeyConstraints } from '../node_modules/@cloud-copilot/iam-simulate/dist/esm/context_keys/discoveryContextKeyConstraints.js'
import { AwsRequestImpl } from '../node_modules/@cloud-copilot/iam-simulate/dist/esm/request/request.js'
import { RequestContextImpl } from '../node_modules/@cloud-copilot/iam-simulate/dist/esm/requestContext.js'

// runSimulation drops context keys whose variable part follows a colon (kms:EncryptionContext:<key>,
// iam-simulate 0.1.173 matches only "/" variables such as aws:PrincipalTag/<key>), so a condition on
// them could never match. Such requests go to the engine directly, after runSimulation has validated
// the same policies without those keys.
const COLON_VARIABLE = /^kms:encryptioncontext:/i

function direct(simulation) {
  const named = (p) => loadPolicy(p.policy, { name: p.name })
  const request = new AwsRequestImpl(
    simulation.request.principal,
    simulation.request.resource,
    simulation.request.action,
    new RequestContextImpl(simulation.request.contextVariables)
  )
  const analysis = authorize({
    request,
    sessionPolicy: undefined,
    identityPolicies: simulation.identityPolicies.map(named),
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    resourcePolicy: simulation.resourcePolicy ? named({ name: 'resource', policy: simulation.resourcePolicy }) : undefined,
    permissionBoundaries: undefined,
    vpcEndpointPolicies: undefined,
    simulationParameters: { simulationMode: 'Strict', discoveryContextKeyConstraints: new DiscoveryContextKeyConstraints([]) },
    serviceSettings: { s3: {} }
  })
  return analysis.result
}

async function decide(simulation) {
  const context = simulation.request.contextVariables
  const colonKeys = Object.keys(context).filter((k) => COLON_VARIABLE.test(k))
  const validated = await runSimulation(
    { ...simulation, request: { ...simulation.request, contextVariables: Object.fromEntries(Object.entries(context).filter(([k]) => !colonKeys.includes(k))) } },
    {}
  )
  if (validated.resultType === 'error') return { decision: 'Error', detail: validated.errors }
  if (colonKeys.length === 0) return { decision: validated.overallResult }
  return { decision: direct(simulation) }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  let id = null
  try {
    const message = JSON.parse(line)
    id = message.id
    process.stdout.write(JSON.stringify({ id, ...(await decide(message.simulation)) }) + '\n')
  } catch (error) {
    process.stdout.write(JSON.stringify({ id, decision: 'Error', detail: String((error && error.stack) || error) }) + '\n')
  }
}
