/**
 * A call due after a delay (a failed drain's retry) that `idle` can wait for and shutdown can
 * cancel: `done` resolves once the call ran or was cancelled.
 */
export interface Due {
  readonly done: Promise<void>
  /** The call is not made; `done` resolves. */
  readonly cancel: () => void
}

/** Calls `run` after `ms`. */
export const after = (ms: number, run: () => void): Due => {
  let end!: () => void
  const done = new Promise<void>((resolve) => (end = resolve))
  const timer = setTimeout(() => {
    try {
      run()
    } finally {
      end()
    }
  }, ms)
  return {
    done,
    cancel: () => {
      clearTimeout(timer)
      end()
    }
  }
}
