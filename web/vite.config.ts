import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The gateway serves the build from gateway/static/app (gitignored); `npm run dev` proxies the
// API, the login and the signal socket to a running `parley up` on port 8080.
const gateway = process.env.PARLEY_GATEWAY ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "../gateway/static/app",
    emptyOutDir: true,
    target: "es2022",
    chunkSizeWarningLimit: 800,
  },
  server: {
    proxy: {
      "/v1": { target: gateway, ws: true },
      "/auth": gateway,
      "/api": gateway,
    },
  },
});
