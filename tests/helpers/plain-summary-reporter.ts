import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends every run with one plain line, `Tests: N passed, N failed` (`, N skipped` when some were), after vitest's own
 * summary. vitest's summary is a table that tools outside vitest do not read; this line is the form CI and other
 * runners' readers understand, so whoever reads only the last line of `npm test` still learns what ran.
 */
export default class PlainSummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const count = { passed: 0, failed: 0, skipped: 0 };
    for (const testModule of testModules) {
      for (const testCase of testModule.children.allTests()) {
        const state = testCase.result().state;
        if (state === 'passed' || state === 'failed' || state === 'skipped') count[state] += 1;
      }
      // A file that failed to load has no test cases; it still failed.
      if (testModule.state() === 'failed' && !testModule.children.size) count.failed += 1;
    }
    const skipped = count.skipped ? `, ${count.skipped} skipped` : '';
    process.stdout.write(`\nTests: ${count.passed} passed, ${count.failed} failed${skipped}\n`);
  }
}
