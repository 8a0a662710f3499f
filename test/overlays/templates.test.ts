/**
 * A template Handlebars cannot parse is named with its line and column, in
 * the message and in its JSON, and with what the parser expected there.
 */
import * as assert from 'uvu/assert';
import { test } from '../support/test.js';
import { compileTemplate } from '../../src/overlays/templates.js';
import { TemplateError } from '../../src/errors.js';

const BROKEN: [name: string, source: string, at: [line: number, column: number], says: RegExp][] = [
  ['a block never closed', 'line one\n{{#if x}}\nno close', [3, 9], /expecting .*'OPEN_ENDBLOCK', got 'EOF'$/],
  ['an expression never closed', 'a\nb {{foo', [2, 5], /expecting 'ID', .*got 'INVALID'$/],
  ['a close without an open', 'x\n  {{/if}}', [2, 3], /expecting 'EOF', got 'OPEN_ENDBLOCK'$/],
  ['a hash value missing', 'ok\n {{foo bar=}}', [2, 12], /got 'CLOSE'$/],
  ['blocks crossed', 'a\n\n   {{#each x}}{{/if}}', [3, 7], /each doesn't match if$/],
];

for (const [name, source, [line, column], says] of BROKEN)
  test(`a template that does not parse (${name}): file:line:column and why, in the message and the JSON`, () => {
    let error: unknown;
    try {
      compileTemplate('overlays/base/etc/t.hbs', source);
    } catch (e) {
      error = e;
    }
    assert.instance(error, TemplateError);
    const e = error as TemplateError;
    assert.match(e.message, new RegExp(`^overlays/base/etc/t\\.hbs:${line}:${column}: is not a valid Handlebars template: `));
    assert.match(e.message, says);
    assert.equal([e.toJSON().file, e.toJSON().line, e.toJSON().column, e.exitCode], ['overlays/base/etc/t.hbs', line, column, 2]);
  });
