// Print, as a JSON array, the name of every model AsyncAPI Modelina (pinned in package.json)
// generates from the AsyncAPI document at argv[2]: tests/contract/test_schema_names.py asserts
// that none is anonymous (AnonymousSchema_N) and none comes twice.
import { Parser, fromFile } from '@asyncapi/parser';
import { TypeScriptGenerator } from '@asyncapi/modelina';

const { document, diagnostics } = await fromFile(new Parser(), process.argv[2]).parse();
if (!document) {
  // Severity 0 is an error: the document could not be read.
  console.error(JSON.stringify(diagnostics.filter((d) => d.severity === 0), null, 1));
  process.exit(2);
}
const models = await new TypeScriptGenerator().generate(document);
console.log(JSON.stringify(models.map((model) => model.modelName)));
