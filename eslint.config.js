// The linter: JavaScript's and typescript-eslint's recommended rules (no type
// information: the type checker runs separately, `tsc -p tsconfig.check.json`),
// plus the few this codebase leans on. Formatting is prettier's job.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'out/', 'profiles/profile.schema.json'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // An unused binding is a leftover; `_name` says "unused on purpose".
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // Promises that nobody awaits lose their errors.
      'no-async-promise-executor': 'error',
      eqeqeq: ['error', 'always', { null: 'ignore' }],
      'prefer-const': 'error',
    },
  },
  {
    // A function longer than a screen hides its steps; cut it into named ones. Tests and scripts
    // are exempt: a test reads as its table of cases, and scripts are thin.
    files: ['src/**/*.ts'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true }],
    },
  },
  {
    // src/tools.ts is the one place netroot runs other programs: a missing one is named with its
    // Debian package, a failure with the end of its stderr, and every run can be bounded and stopped.
    // Exempt: tests, which run the real programs they check against as they are (peers, fixtures);
    // scripts/test.ts, which starts node's test runner; scripts/bench.ts, which times GNU tar and cp
    // side by side with netroot, as they are.
    files: ['**/*.ts', '**/*.js'],
    ignores: ['src/tools.ts', 'test/**', 'scripts/test.ts', 'scripts/bench.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        ...['execa', 'child_process', 'node:child_process'].map((name) => ({
          name,
          message: 'Run programs through src/tools.ts (runTool, startTool), or src/lab/run-command.ts in the lab.',
        })),
      ],
    },
  },
);
