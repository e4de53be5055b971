export * as Acl from "./Acl.ts"
export * as Topic from "./Topic.ts"
export * as Users from "./Users.ts"
