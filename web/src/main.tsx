import { createRoot } from "react-dom/client";
import { I18nProvider } from "./i18n";
import { ToastProvider } from "./components/toasts";
import { SessionProvider } from "./features/auth/session";
import { Routes } from "./routes";
import "./styles.css";

createRoot(document.getElementById("root")!).render(
  <I18nProvider>
    <SessionProvider>
      <ToastProvider>
        <Routes />
      </ToastProvider>
    </SessionProvider>
  </I18nProvider>,
);
