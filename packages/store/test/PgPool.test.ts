/** How driver errors are classified: a lost connection is "unavailable" (retried quietly), a statement's error is not. */
import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { isUnavailable } from "../src/Store.ts"
import { classify } from "../src/PgPool.ts"

/** A socket error as Node raises it (`code`, `errno`, `syscall`): what `pg` passes on when the server goes away. */
const socketError = (code: string, syscall: string) => Object.assign(new Error(`${syscall} ${code}`), { code, errno: -104, syscall })
/** A server error as `pg` raises it: a SQLSTATE in `code`, no syscall. */
const serverError = (code: string) => Object.assign(new Error(`server said ${code}`), { code, severity: "ERROR" })

describe("PgPool.classify", () => {
  it("socket errors (the server restarting or killed) are lost connections, whatever their code", () =>
    fc.assert(
      fc.property(fc.constantFrom("ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH"), fc.constantFrom("read", "write", "connect"), (code, syscall) => {
        const error = classify(socketError(code, syscall), "query")
        expect(error.reason._tag).toBe("ConnectionError")
        expect(isUnavailable(error)).toBe(true)
      })
    ))

  it("a connection closed without a code is a lost connection", () => expect(isUnavailable(classify(new Error("Connection terminated unexpectedly"), "query"))).toBe(true))

  it("server errors keep their SQLSTATE's meaning", () => {
    expect(classify(serverError("23505"), "query").reason._tag).toBe("UniqueViolation")
    expect(classify(serverError("40P01"), "query").reason._tag).toBe("DeadlockError")
    expect(classify(serverError("57P03"), "connect").reason._tag).toBe("ConnectionError") // the database system is starting up
    expect(classify(serverError("42P01"), "query").reason._tag).toBe("SqlSyntaxError")
    expect(isUnavailable(classify(serverError("23505"), "query"))).toBe(false)
    expect(isUnavailable(classify(serverError("XX000"), "query"))).toBe(false)
  })
})
