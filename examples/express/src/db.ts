// Stands in for the seed's database: counting users is the expensive query we run once per
// cluster every 10 s instead of once per worker per request.
let users = 1000

export async function countUsers(): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 20))
  users += Math.floor(Math.random() * 5)
  return users
}
