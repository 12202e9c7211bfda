// SPDX-License-Identifier: MIT
// Ours: a harness that runs Aave v3.7's own library code (aave-dao/aave-v3-origin, compiled
// from the fetched sources, never committed) on operands we choose. See gen_vectors.py.
// The same file serves 3.3 to 3.6: gen_vectors.py drops the lines marked `// @since X` (and
// the blocks `// @since X {` ... `// } @since X`) for releases before X, and uncomments the
// lines `//@<X ...` for releases before X.
pragma solidity ^0.8.10;

import {WadRayMath} from 'src/contracts/protocol/libraries/math/WadRayMath.sol';
import {PercentageMath} from 'src/contracts/protocol/libraries/math/PercentageMath.sol';
import {MathUtils} from 'src/contracts/protocol/libraries/math/MathUtils.sol';
import {TokenMath} from 'src/contracts/protocol/libraries/helpers/TokenMath.sol'; // @since 3.5
import {GenericLogic} from 'src/contracts/protocol/libraries/logic/GenericLogic.sol';
import {ReserveLogic} from 'src/contracts/protocol/libraries/logic/ReserveLogic.sol';
import {DataTypes} from 'src/contracts/protocol/libraries/types/DataTypes.sol';
import {ScaledBalanceTokenBase} from 'src/contracts/protocol/tokenization/base/ScaledBalanceTokenBase.sol';
import {IPool} from 'src/contracts/interfaces/IPool.sol';

/// Math operations by number; `batch` runs many and reports reverts as ok=false.
contract MathHarness {
  using ReserveLogic for DataTypes.ReserveData;

  DataTypes.ReserveData internal scratch;

  function f(uint8 op, uint256 a, uint256 b, uint256 c) public returns (uint256) {
    if (op == 0) return WadRayMath.wadMul(a, b);
    if (op == 1) return WadRayMath.wadDiv(a, b);
    if (op == 2) return WadRayMath.rayMul(a, b);
    if (op == 3) return WadRayMath.rayDiv(a, b);
    if (op == 4) return WadRayMath.rayToWad(a);
    if (op == 5) return WadRayMath.wadToRay(a);
    if (op == 6) return PercentageMath.percentMul(a, b);
    if (op == 7) return PercentageMath.percentDiv(a, b);
    if (op == 8) return WadRayMath.rayMulFloor(a, b); // @since 3.5
    if (op == 9) return WadRayMath.rayMulCeil(a, b); // @since 3.5
    if (op == 10) return WadRayMath.rayDivFloor(a, b); // @since 3.5
    if (op == 11) return WadRayMath.rayDivCeil(a, b); // @since 3.5
    if (op == 12) return PercentageMath.percentMulFloor(a, b); // @since 3.5
    if (op == 13) return PercentageMath.percentMulCeil(a, b); // @since 3.5
    if (op == 14) return PercentageMath.percentDivFloor(a, b); // @since 3.7
    if (op == 15) return PercentageMath.percentDivCeil(a, b); // @since 3.5
    if (op == 16) return MathUtils.mulDivCeil(a, b, c); // @since 3.5
    if (op == 17) return MathUtils.calculateCompoundedInterest(a, uint40(b), c);
    if (op == 18) return MathUtils.calculateLinearInterest(a, uint40(block.timestamp - b));
    if (op == 19) return TokenMath.getATokenMintScaledAmount(a, b); // @since 3.5
    if (op == 20) return TokenMath.getATokenBurnScaledAmount(a, b); // @since 3.5
    if (op == 21) return TokenMath.getATokenTransferScaledAmount(a, b); // @since 3.5
    if (op == 22) return TokenMath.getATokenBalance(a, b); // @since 3.5
    if (op == 23) return TokenMath.getVTokenMintScaledAmount(a, b); // @since 3.5
    if (op == 24) return TokenMath.getVTokenBurnScaledAmount(a, b); // @since 3.5
    if (op == 25) return TokenMath.getVTokenBalance(a, b); // @since 3.5
    // ReserveLogic on a reserve last updated `c` seconds ago: (index a, rate b).
    if (op == 26 || op == 27) {
      scratch.lastUpdateTimestamp = uint40(block.timestamp - c);
      if (op == 26) {
        scratch.liquidityIndex = uint128(a);
        scratch.currentLiquidityRate = uint128(b);
        return scratch.getNormalizedIncome();
      }
      scratch.variableBorrowIndex = uint128(a);
      scratch.currentVariableBorrowRate = uint128(b);
      return scratch.getNormalizedDebt();
    }
    revert('op');
  }

  function batch(
    uint8[] calldata ops,
    uint256[] calldata a,
    uint256[] calldata b,
    uint256[] calldata c
  ) external returns (bool[] memory ok, uint256[] memory r) {
    ok = new bool[](ops.length);
    r = new uint256[](ops.length);
    for (uint256 i = 0; i < ops.length; i++) {
      try this.f(ops[i], a[i], b[i], c[i]) returns (uint256 v) {
        ok[i] = true;
        r[i] = v;
      } catch {}
    }
  }
}

/// A scaled balance token stand-in: GenericLogic reads only scaledBalanceOf (3.7).
contract ScaledStub {
  mapping(address => uint256) public scaledBalanceOf;
  mapping(address => uint256) public balanceOf;

  function set(address user, uint256 scaled, uint256 balance) external {
    scaledBalanceOf[user] = scaled;
    balanceOf[user] = balance;
  }
}

/// GenericLogic.calculateUserAccountData over reserves, prices and eMode categories written
/// in the same eth_call. The harness is its own price oracle.
contract AccountHarness {
  uint256 internal constant MAX_RESERVES = 16;

  struct Reserve {
    uint256 configuration;
    uint128 liquidityIndex;
    uint128 liquidityRate;
    uint128 variableBorrowIndex;
    uint128 variableBorrowRate;
    uint40 age; // seconds since the reserve's last update
    uint256 scaledSupply;
    uint256 scaledVariableDebt;
    uint256 stableDebt; // unused in 3.7
    uint256 price;
    bool listed; // false: a gap in reservesList (address 0)
  }

  struct Category {
    uint8 id;
    uint16 ltv;
    uint16 liquidationThreshold;
    uint16 liquidationBonus;
    uint128 collateralBitmap;
    uint128 borrowableBitmap;
    uint128 ltvzeroBitmap;
    bool isolated;
    address priceSource; // unused in 3.7
    uint256 priceSourcePrice;
  }

  mapping(address => DataTypes.ReserveData) internal reservesData;
  mapping(uint256 => address) internal reservesList;
  mapping(uint8 => DataTypes.EModeCategory) internal eModeCategories;
  mapping(address => uint256) internal prices;
  ScaledStub[MAX_RESERVES] internal aTokens;
  ScaledStub[MAX_RESERVES] internal vTokens;

  constructor() {
    for (uint256 i = 0; i < MAX_RESERVES; i++) {
      aTokens[i] = new ScaledStub();
      vTokens[i] = new ScaledStub();
    }
  }

  function getAssetPrice(address asset) external view returns (uint256) {
    return prices[asset];
  }

  function run(
    Reserve[] calldata reserves,
    Category[] calldata categories,
    uint256 userConfig,
    uint8 userEMode
  ) external returns (uint256[6] memory out, uint256 timestamp) {
    address user = address(0xBEEF);
    for (uint256 i = 0; i < reserves.length; i++) {
      Reserve calldata r = reserves[i];
      address asset = address(uint160(0xA000 + i));
      if (!r.listed) continue;
      reservesList[i] = asset;
      prices[asset] = r.price;
      DataTypes.ReserveData storage d = reservesData[asset];
      d.configuration.data = r.configuration;
      // Before 3.4 a reserve without virtual accounting (GHO) priced debt from balanceOf:
      // set the flag every other reserve has, so the scaled path runs.
      //@<3.4 d.configuration.data = r.configuration | (1 << 252);
      d.liquidityIndex = r.liquidityIndex;
      d.currentLiquidityRate = r.liquidityRate;
      d.variableBorrowIndex = r.variableBorrowIndex;
      d.currentVariableBorrowRate = r.variableBorrowRate;
      d.lastUpdateTimestamp = uint40(block.timestamp - r.age);
      d.id = uint16(i);
      d.aTokenAddress = address(aTokens[i]);
      d.variableDebtTokenAddress = address(vTokens[i]);
      aTokens[i].set(user, r.scaledSupply, 0);
      vTokens[i].set(user, r.scaledVariableDebt, 0);
    }
    for (uint256 j = 0; j < categories.length; j++) {
      Category calldata c = categories[j];
      DataTypes.EModeCategory storage e = eModeCategories[c.id];
      e.ltv = c.ltv;
      e.liquidationThreshold = c.liquidationThreshold;
      e.liquidationBonus = c.liquidationBonus;
      e.collateralBitmap = c.collateralBitmap;
      e.borrowableBitmap = c.borrowableBitmap;
      e.ltvzeroBitmap = c.ltvzeroBitmap; // @since 3.6
      e.isolated = c.isolated; // @since 3.7
    }
    out = _accountData(
      DataTypes.CalculateUserAccountDataParams({
        userConfig: DataTypes.UserConfigurationMap({data: userConfig}),
        //@<3.4 reservesCount: reserves.length,
        user: user,
        oracle: address(this),
        userEModeCategory: userEMode
      })
    );
    timestamp = block.timestamp;
  }

  function _accountData(
    DataTypes.CalculateUserAccountDataParams memory params
  ) internal view returns (uint256[6] memory out) {
    bool zeroLtv;
    (out[0], out[1], out[2], out[3], out[4], zeroLtv) = GenericLogic.calculateUserAccountData(
      reservesData,
      reservesList,
      eModeCategories,
      params
    );
    out[5] = zeroLtv ? 1 : 0; // hasZeroLtvCollateral
  }

  /// GenericLogic.calculateAvailableBorrows, as Pool.getUserAccountData returns it.
  function availableBorrows(uint256 c, uint256 d, uint256 ltv) external pure returns (uint256) {
    return GenericLogic.calculateAvailableBorrows(c, d, ltv);
  }
}

contract PoolStub {
  function ADDRESSES_PROVIDER() external pure returns (address) {
    return address(0);
  }
}

// @since 3.5 {
/// The token base's own _mintScaled/_burnScaled on a user state we set; the events are the
/// vectors. TokenCase reports the scaled balance before and after, read from storage.
contract TokenHarness is ScaledBalanceTokenBase {
  event TokenCase(uint256 indexed n, uint256 scaledBefore, uint256 scaledAfter);

  struct Op {
    uint120 scaledBefore;
    uint128 previousIndex;
    uint256 index;
    uint256 amount; // underlying; scaled with TokenMath by direction, as the Pool does
    bool burn;
    bool debt;
  }

  constructor(IPool pool) ScaledBalanceTokenBase(pool, 'H', 'H', 18, address(0)) {}

  function run(Op[] calldata ops) external {
    _totalSupply = type(uint120).max;
    for (uint256 n = 0; n < ops.length; n++) {
      Op calldata o = ops[n];
      address user = address(uint160(0x10000 + n));
      _userState[user].balance = o.scaledBefore;
      _userState[user].additionalData = o.previousIndex;
      if (o.debt) {
        if (o.burn) {
          _burnScaled(user, user, TokenMath.getVTokenBurnScaledAmount(o.amount, o.index), o.index, TokenMath.getVTokenBalance);
        } else {
          _mintScaled(user, user, TokenMath.getVTokenMintScaledAmount(o.amount, o.index), o.index, TokenMath.getVTokenBalance);
        }
      } else if (o.burn) {
        _burnScaled(user, user, TokenMath.getATokenBurnScaledAmount(o.amount, o.index), o.index, TokenMath.getATokenBalance);
      } else {
        _mintScaled(user, user, TokenMath.getATokenMintScaledAmount(o.amount, o.index), o.index, TokenMath.getATokenBalance);
      }
      emit TokenCase(n, o.scaledBefore, _userState[user].balance);
    }
  }
}
// } @since 3.5
