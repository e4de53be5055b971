/**
 * The HTTP port: health and status, the operators' API and console (rejections, parked keys,
 * workflows, flows, the cluster's view), metrics, and the apps' own endpoints.
 */
import { Users } from "@baton/auth"
import { type HttpRoute } from "@baton/core"
import type { WorkflowStore } from "@baton/mediator"
import type { Page } from "@baton/store"
import { Context, Effect, Layer } from "effect"
import * as Console from "../Console.ts"
import * as Flows from "../Flows.ts"
import * as Http_ from "../Http.ts"
import { Apps } from "./Apps.ts"
import { Broker } from "./Broker.ts"
import { Ownership } from "./Ownership.ts"
import { ProcessorHost } from "./ProcessorHost.ts"
import { Queues } from "./Queues.ts"
import { Relay } from "./Relay.ts"
import { promise, Settings } from "./Settings.ts"
import { Store } from "./Store.ts"

export class Http extends Context.Service<Http, { readonly port: number }>()("baton/runtime/Http") {}

export const layer = Layer.effect(
  Http,
  Effect.gen(function* () {
    const { config, logger, lifecycle } = yield* Settings
    const store = yield* Store
    const ownership = yield* Ownership
    const { inbox, outbox, rejections, operations } = yield* Queues
    const { apps, mask, masked } = yield* Apps
    const { face, security, users, tls } = yield* Broker
    const { tap } = yield* Relay
    const host = yield* ProcessorHost
    const { workflowStore, domains, parking, repairs, consumers, metrics } = host
    /** The domain mediator of a workflow (any, for an unknown one: it answers 404). */
    const ownerOf = async (id: string) => {
      const state = await workflowStore?.load(id)
      return domains.find((d) => d.domain === state?.domain) ?? domains[0]!
    }
    // The console's flows: the store's record, and the envelopes published lately (Flows.ts).
    const flows = Flows.make({ store, tap, dashboard: parking !== undefined })
    const authorizing = users()
    const http = yield* Effect.acquireRelease(
      promise(() =>
        Http_.start({
          pages: Console.pages(),
          extra: Console.endpoints({
            flows,
            tap,
            resubmit: Console.resubmitter({ store, inbox, flows, consumer: host.consumer })
          }),
          host: config.host,
          port: config.httpPort,
          maxConcurrent: config.httpMaxConcurrent,
          onBusy: metrics.httpRefused,
          rejections,
          operations,
          logger,
          mask,
          // The embedded broker's guard counts (a front thread's answers across its port); an external broker's refusals are its own.
          security: face?.counts ?? (async () => security.counts()),
          metrics: metrics.scrape,
          // The users file in force, with authentication on (a reload never unsets it).
          ...(authorizing === undefined ? {} : { authorize: (token: string) => Users.checkToken(users() ?? authorizing, token) }),
          ...(tls === undefined ? {} : { tls }),
          // What the operators see is masked; the stores keep what a restart or a resubmission needs.
          routes: Object.fromEntries(Object.entries(Object.assign({}, ...apps.map((a) => a.http ?? {})) as Readonly<Record<string, HttpRoute>>).map(([route, f]) => [route, masked(f)])),
          ...(repairs === undefined || parking === undefined
            ? {}
            : { dashboard: { entries: { page: masked(repairs.page), resubmit: masked(repairs.resubmit), discard: masked(repairs.discard) }, held: masked(() => parking.all()) } }),
          ...(workflowStore === undefined
            ? {}
            : {
                workflows: {
                  page: masked((filter: Omit<WorkflowStore.Filter, "limit">, req: Page.Request) => workflowStore.page(filter, req)),
                  get: masked((id: string) => workflowStore.load(id)),
                  restart: masked(async (id: string, patch: Readonly<Record<string, unknown>> | undefined) => (await ownerOf(id)).restart(id, patch)),
                  discard: masked(async (id: string, reason: string, by: string) => (await ownerOf(id)).discard(id, reason, by))
                }
              }),
          cluster: async () => {
            const view = await ownership.view()
            if (view === undefined) return undefined
            const owners = new Map(view.partitions.map((p) => [p.part, p.owner] as const))
            const owned = new Map<string, Array<string>>()
            if (workflowStore !== undefined)
              for (const row of await store.run(store.query("SELECT id FROM workflows WHERE status <> 'discarded' ORDER BY updated_at").all())) {
                const owner = owners.get(ownership.partOf(String(row.id))) ?? "nobody"
                owned.set(owner, [...(owned.get(owner) ?? []), String(row.id)])
              }
            return {
              instance: ownership.instance,
              partitions: ownership.partitions,
              members: view.members.map((m) => ({
                ...m,
                partitions: view.partitions.filter((p) => p.owner === m.instance).map((p) => p.part),
                workflows: owned.get(m.instance) ?? []
              })),
              unowned: view.partitions.filter((p) => p.owner === null).map((p) => p.part)
            }
          },
          status: {
            phase: () => lifecycle.phase,
            detail: async (options) => ({
              outbox: await outbox.size(),
              statements: store.statements(),
              ...(options?.statements === true ? { statementTexts: store.breakdown() } : {}),
              memory: Object.fromEntries(Object.entries(process.memoryUsage()).map(([k, v]) => [`${k}Mb`, Math.round(v / 1048576)])),
              processors: consumers.map(({ processor, pool }) => ({ name: processor.name, partitions: pool.length, restarts: pool.reduce((n, a) => n + a.restarts(), 0) }))
            })
          }
        })
      ),
      (h) => Effect.promise(() => h.close())
    )
    logger.log("info", "http listening", { address: `${config.host}:${http.port}` })
    return { port: http.port }
  })
)
