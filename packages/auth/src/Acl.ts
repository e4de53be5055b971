/**
 * Who may publish and subscribe where, by role (Mosquitto-style: closed by default). `%c` in a
 * grant stands for the client's own id, so a client can read its own replies and nobody else's.
 */
import * as Topic from "./Topic.ts"

export type Role = "client" | "observer" | "operator" | "service"

export interface Grants {
  readonly publish: ReadonlyArray<string>
  readonly subscribe: ReadonlyArray<string>
}

export const roles: Readonly<Record<Role, Grants>> = {
  /** Outside clients: send initiating events, watch events and errors, read their own replies. */
  client: { publish: ["initiate/#"], subscribe: ["events/#", "errors/#", "reply/%c/#"] },
  /** Dashboards: watch only. */
  observer: { publish: [], subscribe: ["events/#", "errors/#"] },
  /** People who restart, resubmit and discard over HTTP: on MQTT they watch, like observers. */
  operator: { publish: [], subscribe: ["events/#", "errors/#"] },
  /** Processors and mediators in their own processes: every channel, including the runtime's internal ones. */
  service: { publish: ["#", "$baton/#"], subscribe: ["#", "$baton/#"] }
}

export const allRoles: ReadonlyArray<Role> = ["client", "observer", "operator", "service"]

export const isRole = (s: string): s is Role => (allRoles as ReadonlyArray<string>).includes(s)

const expand = (grant: string, clientId: string) => grant.replaceAll("%c", clientId)

export const mayPublish = (userRoles: ReadonlyArray<Role>, clientId: string, topic: string): boolean =>
  Topic.isValidTopic(topic) && userRoles.some((r) => roles[r].publish.some((g) => Topic.matches(expand(g, clientId), topic)))

export const maySubscribe = (userRoles: ReadonlyArray<Role>, clientId: string, filter: string): boolean =>
  userRoles.some((r) => roles[r].subscribe.some((g) => Topic.covers(expand(g, clientId), filter)))

/**
 * What an HTTP request does: `read` the record (rejections, workflows, dashboard, cluster, the
 * operations log), `operate` (restart, resubmit, discard: a person's decision, recorded with the
 * person), or `submit` to an app's own endpoint (what a client would otherwise publish).
 */
export type HttpAccess = "read" | "operate" | "submit"

export const httpRoles: Readonly<Record<HttpAccess, ReadonlyArray<Role>>> = {
  read: ["observer", "operator", "service"],
  operate: ["operator"],
  submit: ["client", "service"]
}

export const mayHttp = (userRoles: ReadonlyArray<Role>, access: HttpAccess): boolean => userRoles.some((r) => httpRoles[access].includes(r))
