/**
 * Progress of long steps (reading a base, building trees, packing): a bar on a
 * terminal, plain start/finish lines elsewhere (CI logs), nothing with --json.
 * Always on stderr, so stdout stays the command's result.
 */
import cliProgress from 'cli-progress';

export interface Step {
  /** Work done so far out of a known total (files, bytes, nodes). */
  update(done: number, total?: number): void;
  finish(summary?: string): void;
}

export interface Reporter {
  step(name: string, total?: number, unit?: string): Step;
  info(line: string): void;
}

const seconds = (start: bigint) => (Number(process.hrtime.bigint() - start) / 1e9).toFixed(1);

/** Plain lines: one when a step starts, one when it ends with its duration. */
export function lineReporter(write: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): Reporter {
  return {
    info: write,
    step(name) {
      const start = process.hrtime.bigint();
      write(`${name} …`);
      return {
        update() {},
        finish(summary) {
          write(`${name}: ${summary ? `${summary}, ` : ''}${seconds(start)} s`);
        },
      };
    },
  };
}

/** A bar per step on a terminal. */
export function terminalReporter(stream: NodeJS.WriteStream = process.stderr): Reporter {
  return {
    info: (line) => stream.write(`${line}\n`),
    step(name, total = 0, unit = 'items') {
      const start = process.hrtime.bigint();
      const bar = new cliProgress.SingleBar(
        { stream, format: `${name} [{bar}] {value}/{total} ${unit} {duration}s`, hideCursor: true, clearOnComplete: true, fps: 10 },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
      return {
        update(done, newTotal) {
          if (newTotal !== undefined) bar.setTotal(newTotal);
          bar.update(done);
        },
        finish(summary) {
          bar.stop();
          stream.write(`${name}: ${summary ? `${summary}, ` : ''}${seconds(start)} s\n`);
        },
      };
    },
  };
}

export const silentReporter: Reporter = { info() {}, step: () => ({ update() {}, finish() {} }) };

export function defaultReporter(options: { json?: boolean; stream?: NodeJS.WriteStream } = {}): Reporter {
  const stream = options.stream ?? process.stderr;
  if (options.json) return silentReporter;
  return stream.isTTY && !process.env.CI ? terminalReporter(stream) : lineReporter((l) => stream.write(`${l}\n`));
}
