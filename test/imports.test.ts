/**
 * The layers import downwards only: no import circle anywhere in src/ (a module in a circle cannot be read,
 * tested or moved alone), and nothing in base/ imports from emit/ (the base is read before anything is emitted).
 * The graph is TypeScript's own reading of each file's imports, type-only ones included.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import * as assert from 'uvu/assert';
import { suite } from './support/test.js';

const test = suite('imports');
const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : [],
  );
}

/** Each module of src/ (relative to it) and the modules of src/ it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const local = importedFiles
      .map((i) => i.fileName)
      .filter((name) => name.startsWith('.'))
      .map((name) => path.relative(SRC, path.resolve(path.dirname(file), name.replace(/\.js$/, '.ts'))));
    graph.set(path.relative(SRC, file), [...new Set(local)].sort());
  }
  return graph;
}

/** The strongly connected components of more than one module (or one that imports itself): Tarjan's algorithm. */
function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    for (let w = stack.pop()!; ; w = stack.pop()!) {
      onStack.delete(w);
      component.push(w);
      if (w === v) break;
    }
    if (component.length > 1 || graph.get(v)?.includes(v)) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found;
}

test('the import graph is read: build.ts imports the pipeline, and a file that is not there is not invented', () => {
  const graph = importGraph();
  assert.ok(graph.get('build.ts')?.includes('plan/plan.ts'));
  for (const [file, imports] of graph) for (const i of imports) assert.ok(graph.has(i), `${file} imports ${i}, which is not in src/`);
});

test('the circle finder finds a circle of three and a module importing itself, and nothing in a line', () => {
  const graph = new Map([
    ['a', ['b']],
    ['b', ['c']],
    ['c', ['a', 'd']],
    ['d', []],
    ['e', ['e']],
    ['f', ['d']],
  ]);
  assert.equal(circles(graph).sort(), [['a', 'b', 'c'], ['e']]);
});

test('no import circle in src/', () => {
  assert.equal(
    circles(importGraph()).map((c) => c.join(' → ')),
    [],
  );
});

test('nothing in base/ imports from emit/', () => {
  const upward = [...importGraph()].flatMap(([file, imports]) =>
    file.startsWith('base/') ? imports.filter((i) => i.startsWith('emit/')).map((i) => `${file} imports ${i}`) : [],
  );
  assert.equal(upward, []);
});
