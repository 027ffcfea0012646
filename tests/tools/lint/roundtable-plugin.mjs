// Redocly CLI plugin: the contract rules no built-in rule covers, and one fix to Redocly's
// AsyncAPI 3 type tree. Used by redocly.yaml beside it (`make spec-lint`).

const FOUR_XX = /^4[0-9Xx]{2}$/;
const PROBLEM_STATUS = /^[45][0-9Xx]{2}$/;
const PROBLEM_JSON = "application/problem+json";

/**
 * Every operation declares its problem responses: at least one 4XX, and every 4XX and 5XX
 * response is `application/problem+json`. `no4xx` names the operations that take no input
 * at all (the probes), so that nothing a client sends can be refused.
 */
function operationProblemResponses({ no4xx = [] } = {}) {
  const exempt = new Set(no4xx);
  const seen = new Set();
  return {
    Operation(operation, { report, location, resolve }) {
      const responses = operation.responses ?? {};
      const codes = Object.keys(responses);
      const id = operation.operationId ?? location.pointer;
      seen.add(operation.operationId);
      if (!exempt.has(operation.operationId) && !codes.some((code) => FOUR_XX.test(code))) {
        report({
          message: `Operation \`${id}\` declares no 4XX problem response.`,
          location: location.child(["responses"]).key(),
        });
      }
      for (const code of codes.filter((code) => PROBLEM_STATUS.test(code))) {
        const response = resolve(responses[code]).node;
        if (!response?.content?.[PROBLEM_JSON]) {
          report({
            message: `Response ${code} of \`${id}\` must be \`${PROBLEM_JSON}\`.`,
            location: location.child(["responses", code]).key(),
          });
        }
      }
    },
    Root: {
      leave(_, { report, location }) {
        for (const id of exempt) {
          if (!seen.has(id)) {
            report({ message: `\`no4xx\` names \`${id}\`, which is no operation: drop it.`, location });
          }
        }
      },
    },
  };
}

/**
 * No component of the AsyncAPI document goes unreferenced (Redocly's `no-unused-components`
 * covers OpenAPI only). `roots` names the schemas that code uses although no message does.
 */
function asyncNoUnusedComponents({ roots = [] } = {}) {
  const keep = new Set(roots);
  const components = new Map();
  const define = (node, { location, key }) => {
    const pointer = location.absolutePointer;
    if (!location.pointer.startsWith("#/components/")) return;
    components.set(pointer, { used: components.get(pointer)?.used ?? false, name: String(key), location });
  };
  return {
    ref(node, { resolve }) {
      const target = resolve(node);
      if (!target.location) return;
      const pointer = target.location.absolutePointer;
      components.set(pointer, { ...components.get(pointer), used: true });
    },
    NamedSchemas: { Schema: define, MultiFormatSchema: define },
    NamedMessages: { Message: define },
    NamedMessageTraits: { MessageTrait: define },
    NamedOperationTraits: { OperationTrait: define },
    NamedParameters: { Parameter: define },
    NamedSecuritySchemes: { SecurityScheme: define },
    NamedCorrelationIds: { CorrelationId: define },
    Root: {
      leave(_, { report, location: root }) {
        const defined = new Set();
        for (const { used, name, location } of components.values()) {
          if (!location) continue;
          defined.add(name);
          if (!used && !keep.has(name)) {
            report({ message: `Component "${name}" is never used.`, location: location.key() });
          }
        }
        for (const name of keep) {
          if (!defined.has(name)) {
            report({ message: `\`roots\` names \`${name}\`, which is no component: drop it.`, location: root });
          }
        }
      },
    },
  };
}

export default function roundtable() {
  return {
    id: "roundtable",
    rules: {
      oas3: { "operation-problem-responses": operationProblemResponses },
      async3: { "no-unused-components": asyncNoUnusedComponents },
    },
    typeExtension: {
      // AsyncAPI 3.0's Schema Object has `discriminator: <property name>` (a string); Redocly's
      // AsyncAPI type tree reuses OpenAPI's Discriminator Object and so rejects the spec's form.
      async3(types) {
        return {
          ...types,
          Schema: { ...types.Schema, properties: { ...types.Schema.properties, discriminator: { type: "string" } } },
        };
      },
    },
  };
}
