/** Who is using the app: the gateway's cookie session (`/auth/session`) and the caller it names. */
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from "react";
import { api } from "../../api";

export interface SessionUser {
  /** `users/{id}`. */
  name: string;
  displayName: string;
}

interface Session {
  loading: boolean;
  user: SessionUser | null;
  refresh: () => void;
}

const SessionContext = createContext<Session>({ loading: true, user: null, refresh: () => undefined });

export function SessionProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<{ loading: boolean; user: SessionUser | null }>({ loading: true, user: null });
  const refresh = useCallback(() => {
    void (async () => {
      try {
        const session = (await (await fetch("/auth/session", { credentials: "same-origin" })).json()) as { authenticated?: boolean };
        if (!session.authenticated) {
          setState({ loading: false, user: null });
          return;
        }
        const { data } = await api.GET("/v1/caller");
        setState({ loading: false, user: data?.user ? { name: data.user, displayName: data.displayName ?? "" } : null });
      } catch {
        setState({ loading: false, user: null });
      }
    })();
  }, []);
  useEffect(refresh, [refresh]);
  return <SessionContext.Provider value={{ ...state, refresh }}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  return useContext(SessionContext);
}

/** The gateway's login (OIDC, or the dev login of the embedded default), back to `next`. */
export function loginUrl(next: string = location.pathname): string {
  return `/auth/login?next=${encodeURIComponent(next)}`;
}

/** Logs out: a POST (the gateway refuses GET, so no link elsewhere can log users out). */
export function LogoutForm({ label }: { label: string }) {
  return (
    <form method="post" action="/auth/logout?next=/" className="inline-form">
      <button type="submit" className="button quiet">
        {label}
      </button>
    </form>
  );
}
