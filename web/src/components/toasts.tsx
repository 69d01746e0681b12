/** Toasts: short notices (joins, leaves, admissions) read out by screen readers (role=status). */
import { createContext, useCallback, useContext, useMemo, useRef, useState, type ReactNode } from "react";
import { Button } from "react-aria-components";
import { useT } from "../i18n";
import { Icon } from "./icons";

interface Toast {
  id: number;
  text: string;
  action?: { label: string; run: () => void };
}

interface Toasts {
  push: (text: string, options?: { action?: Toast["action"]; durationMs?: number }) => void;
}

const ToastContext = createContext<Toasts>({ push: () => undefined });
const MAX_SHOWN = 4;

export function ToastProvider({ children }: { children: ReactNode }) {
  const [toasts, setToasts] = useState<Toast[]>([]);
  const next = useRef(1);
  const t = useT();
  const dismiss = useCallback((id: number) => setToasts((all) => all.filter((toast) => toast.id !== id)), []);
  const push = useCallback<Toasts["push"]>(
    (text, options = {}) => {
      const id = next.current++;
      setToasts((all) => [...all.slice(-(MAX_SHOWN - 1)), { id, text, ...(options.action ? { action: options.action } : {}) }]);
      window.setTimeout(() => dismiss(id), options.durationMs ?? 5000);
    },
    [dismiss],
  );
  const value = useMemo(() => ({ push }), [push]);
  return (
    <ToastContext.Provider value={value}>
      {children}
      <div className="toasts" role="status" aria-live="polite">
        {toasts.map((toast) => (
          <div key={toast.id} className="toast">
            <span>{toast.text}</span>
            {toast.action && (
              <Button
                className="button small"
                onPress={() => {
                  toast.action?.run();
                  dismiss(toast.id);
                }}
              >
                {toast.action.label}
              </Button>
            )}
            <Button className="icon-button small" aria-label={t("common.close")} onPress={() => dismiss(toast.id)}>
              <Icon name="close" size={16} />
            </Button>
          </div>
        ))}
      </div>
    </ToastContext.Provider>
  );
}

export function useToasts(): Toasts {
  return useContext(ToastContext);
}
