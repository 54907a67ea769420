-- Sample data for the quickstart: a small shop with the kinds of content a
-- real database holds (text in several scripts, jsonb, arrays, bytea, a
-- sequence, a view, a trigger, a large object).
create schema shop;
create table shop.customers (id serial primary key, name text not null, email text unique, profile jsonb);
create table shop.orders (
  id bigserial primary key,
  customer_id int references shop.customers(id),
  items text[],
  total numeric(10,2),
  placed_at timestamptz not null default '2026-11-01T09:00:00Z',
  receipt bytea
);
insert into shop.customers (name, email, profile)
select 'Customer ' || i || ' — Ünïcødé 日本', 'c' || i || '@example.com', jsonb_build_object('tier', (array['gold','silver','bronze'])[1 + i % 3], 'since', 2000 + i % 26)
from generate_series(1, 2000) i;
insert into shop.orders (customer_id, items, total, placed_at, receipt)
select 1 + i % 2000, array['sku-' || (i % 97), 'sku-' || (i % 13)], (i % 500) * 1.99,
       '2026-11-01T09:00:00Z'::timestamptz + make_interval(mins => i), decode(md5(i::text), 'hex')
from generate_series(1, 50000) i;
create index on shop.orders (customer_id);
create view shop.gold_customers as select * from shop.customers where profile->>'tier' = 'gold';
create function shop.stamp() returns trigger language plpgsql as $$ begin new.placed_at := coalesce(new.placed_at, now()); return new; end $$;
create trigger orders_stamp before insert on shop.orders for each row execute function shop.stamp();
select lo_from_bytea(0, convert_to('the terms and conditions, as a large object', 'UTF8'));
