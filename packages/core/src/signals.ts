import type { Logger } from './logger.js'
import type { Primary } from './primary.js'

/**
 * SIGINT/SIGTERM: graceful shutdown of the whole cluster, once, then exit with its code; a second one
 * kills the workers and exits at once (130/143). SIGUSR2 (POSIX): rolling reload.
 */
export function installPrimarySignals(primary: Primary, log: Logger): void {
  let received: NodeJS.Signals | undefined
  const onStop = (signal: NodeJS.Signals) => {
    if (received) {
      log.warn({ signal }, 'second signal, killing workers and exiting now')
      primary.kill()
      process.exit(signal === 'SIGINT' ? 130 : 143)
    }
    received = signal
    void primary.shutdown(signal).then((code) => process.exit(code))
  }
  process.on('SIGINT', onStop)
  process.on('SIGTERM', onStop)
  if (process.platform !== 'win32') {
    process.on('SIGUSR2', () => {
      log.info('SIGUSR2: rolling reload')
      primary.reload().catch(() => {}) // reported by the 'reload-failed' event and log line
    })
  }
}
