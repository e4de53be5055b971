/** The comment-posting app: its app module (`./app`), and its events and checks for tests and clients. */

export * from "./app.ts"
export { default as app } from "./app.ts"

