import { Link } from "wouter";
import { useT } from "../i18n";
import { loginUrl, LogoutForm, useSession } from "../features/auth/session";
import { LanguageSwitch } from "./LanguageSwitch";

export function Header() {
  const t = useT();
  const { user, loading } = useSession();
  return (
    <header className="site-header">
      <Link href="/" className="brand">
        <span className="brand-mark" aria-hidden="true" />
        {t("app.name")}
      </Link>
      <div className="header-end">
        <LanguageSwitch />
        {!loading &&
          (user ? (
            <>
              <span className="who" title={t("auth.loggedInAs", { name: user.displayName })}>
                {user.displayName}
              </span>
              <LogoutForm label={t("auth.logout")} />
            </>
          ) : (
            <a className="button primary" href={loginUrl()}>
              {t("auth.login")}
            </a>
          ))}
      </div>
    </header>
  );
}
