import { defineConfig } from "vitest/config";

// Logic that needs no browser: i18n, reducers, layout maths, shortcuts, meeting codes.
export default defineConfig({
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});
