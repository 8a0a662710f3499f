/**
 * What the lab started, undone in reverse order on success, failure and
 * Ctrl-C. Each undo step is bounded by its own timeouts and runs even when an
 * earlier one failed.
 */
export class Cleanup {
  private readonly steps: { what: string; undo: () => Promise<void> }[] = [];
  private done = false;

  add(what: string, undo: () => Promise<void>): void {
    this.steps.push({ what, undo });
  }

  /** Runs every undo step once, newest first; returns what could not be undone. */
  async run(log: (line: string) => void = () => undefined): Promise<string[]> {
    if (this.done) return [];
    this.done = true;
    const failed: string[] = [];
    for (const step of this.steps.reverse()) {
      try {
        await step.undo();
      } catch (error) {
        failed.push(`${step.what}: ${(error as Error).message}`);
        log(`cleanup: could not undo ${step.what}: ${(error as Error).message}`);
      }
    }
    return failed;
  }
}
