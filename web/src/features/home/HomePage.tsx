/** Home: start a meeting at once, join by code or link, my rooms. */
import { useEffect, useState, type FormEvent } from "react";
import { Button, FieldError, Form, Input, Label, TextField } from "react-aria-components";
import { Link, useLocation } from "wouter";
import { api, errorText, type Room } from "../../api";
import { Header } from "../../components/Header";
import { useToasts } from "../../components/toasts";
import { useT } from "../../i18n";
import { loginUrl, useSession } from "../auth/session";
import { parseMeetingCode } from "./code";

export function HomePage() {
  const t = useT();
  const [, navigate] = useLocation();
  const { user, loading } = useSession();
  const toasts = useToasts();
  const [code, setCode] = useState("");
  const [codeError, setCodeError] = useState<string | null>(null);
  const [creating, setCreating] = useState(false);
  const [rooms, setRooms] = useState<Room[] | null>(null);

  useEffect(() => {
    if (!user) return;
    api.GET("/v1/rooms", { params: { query: { pageSize: 20 } } }).then(
      ({ data }) => setRooms(data?.rooms ?? []),
      () => setRooms([]),
    );
  }, [user]);

  async function start() {
    setCreating(true);
    try {
      // An empty room would read as no room at all: name the (default) access level.
      const { data } = await api.POST("/v1/rooms", { body: { accessLevel: "ACCESS_LEVEL_PUBLIC" } });
      if (data?.slug) navigate(`/r/${data.slug}`);
    } catch (error) {
      toasts.push(t("common.error", { message: errorText(error) }));
    } finally {
      setCreating(false);
    }
  }

  function join(event: FormEvent) {
    event.preventDefault();
    const slug = parseMeetingCode(code);
    if (!slug) {
      setCodeError(t("home.badCode"));
      return;
    }
    navigate(`/r/${slug}`);
  }

  return (
    <div className="page">
      <Header />
      <main className="home" id="main">
        <section className="hero">
          <h1>{t("app.tagline")}</h1>
          <div className="hero-actions">
            {user ? (
              <Button className="button primary large" onPress={start} isDisabled={creating}>
                {creating ? t("home.creating") : t("home.start")}
              </Button>
            ) : (
              !loading && (
                <div className="stack">
                  <a className="button primary large" href={loginUrl("/")}>
                    {t("auth.login")}
                  </a>
                  <p className="hint">{t("home.startHint")}</p>
                </div>
              )
            )}
          </div>
          <Form className="join-form" onSubmit={join} validationErrors={codeError ? { code: codeError } : {}}>
            <TextField
              name="code"
              className="field grow"
              value={code}
              onChange={(value) => {
                setCode(value);
                setCodeError(null);
              }}
            >
              <Label>{t("home.codeLabel")}</Label>
              <Input placeholder={t("home.codePlaceholder")} autoComplete="off" spellCheck={false} />
              <FieldError className="field-error" />
            </TextField>
            <Button type="submit" className="button">
              {t("home.join")}
            </Button>
          </Form>
        </section>
        {user && (
          <section className="my-rooms" aria-labelledby="my-rooms">
            <h2 id="my-rooms">{t("home.myRooms")}</h2>
            {rooms && rooms.length === 0 && <p className="hint">{t("home.noRooms")}</p>}
            <ul className="room-list">
              {(rooms ?? []).map((room) => (
                <li key={room.name}>
                  <Link href={`/r/${room.slug}`} className="room-link">
                    {room.displayName && <span className="room-title">{room.displayName}</span>}
                    <code>{room.slug}</code>
                  </Link>
                  <Link href={`/r/${room.slug}/recordings`} className="quiet-link">
                    {t("home.recordings")}
                  </Link>
                </li>
              ))}
            </ul>
          </section>
        )}
      </main>
    </div>
  );
}
