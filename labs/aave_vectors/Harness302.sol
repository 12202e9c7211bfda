// SPDX-License-Identifier: MIT
// Ours: a harness that runs Aave v3.0.2's own library code (npm @aave/core-v3 1.19.3, compiled
// from devnet/node_modules, never committed) on operands we choose. See gen_vectors.py.
// The same harness as Harness37.sol where the two releases agree: it cannot be shared, as
// each compiles against its own release's structs and function signatures.
pragma solidity ^0.8.10;

import {WadRayMath} from 'contracts/protocol/libraries/math/WadRayMath.sol';
import {PercentageMath} from 'contracts/protocol/libraries/math/PercentageMath.sol';
import {MathUtils} from 'contracts/protocol/libraries/math/MathUtils.sol';
import {GenericLogic} from 'contracts/protocol/libraries/logic/GenericLogic.sol';
import {ReserveLogic} from 'contracts/protocol/libraries/logic/ReserveLogic.sol';
import {DataTypes} from 'contracts/protocol/libraries/types/DataTypes.sol';
import {ScaledBalanceTokenBase} from 'contracts/protocol/tokenization/base/ScaledBalanceTokenBase.sol';
import {IPool} from 'contracts/interfaces/IPool.sol';

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
    if (op == 17) return MathUtils.calculateCompoundedInterest(a, uint40(b), c);
    if (op == 18) return MathUtils.calculateLinearInterest(a, uint40(block.timestamp - b));
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

/// A scaled balance token stand-in: scaledBalanceOf (aToken, variable debt) and balanceOf
/// (stable debt), which is all GenericLogic 3.0.2 reads.
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
    uint256 stableDebt; // StableDebtToken.balanceOf(user), accrued
    uint256 price;
    bool listed; // false: a gap in reservesList (address 0)
  }

  struct Category {
    uint8 id;
    uint16 ltv;
    uint16 liquidationThreshold;
    uint16 liquidationBonus;
    uint128 collateralBitmap; // unused in 3.0.2
    uint128 borrowableBitmap; // unused in 3.0.2
    uint128 ltvzeroBitmap; // unused in 3.0.2
    bool isolated; // unused in 3.0.2
    address priceSource; // 0: none
    uint256 priceSourcePrice;
  }

  mapping(address => DataTypes.ReserveData) internal reservesData;
  mapping(uint256 => address) internal reservesList;
  mapping(uint8 => DataTypes.EModeCategory) internal eModeCategories;
  mapping(address => uint256) internal prices;
  ScaledStub[MAX_RESERVES] internal aTokens;
  ScaledStub[MAX_RESERVES] internal vTokens;
  ScaledStub[MAX_RESERVES] internal sTokens;

  constructor() {
    for (uint256 i = 0; i < MAX_RESERVES; i++) {
      aTokens[i] = new ScaledStub();
      vTokens[i] = new ScaledStub();
      sTokens[i] = new ScaledStub();
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
      d.liquidityIndex = r.liquidityIndex;
      d.currentLiquidityRate = r.liquidityRate;
      d.variableBorrowIndex = r.variableBorrowIndex;
      d.currentVariableBorrowRate = r.variableBorrowRate;
      d.lastUpdateTimestamp = uint40(block.timestamp - r.age);
      d.id = uint16(i);
      d.aTokenAddress = address(aTokens[i]);
      d.variableDebtTokenAddress = address(vTokens[i]);
      d.stableDebtTokenAddress = address(sTokens[i]);
      aTokens[i].set(user, r.scaledSupply, 0);
      vTokens[i].set(user, r.scaledVariableDebt, 0);
      sTokens[i].set(user, 0, r.stableDebt);
    }
    for (uint256 j = 0; j < categories.length; j++) {
      Category calldata c = categories[j];
      DataTypes.EModeCategory storage e = eModeCategories[c.id];
      e.ltv = c.ltv;
      e.liquidationThreshold = c.liquidationThreshold;
      e.liquidationBonus = c.liquidationBonus;
      e.priceSource = c.priceSource;
      if (c.priceSource != address(0)) prices[c.priceSource] = c.priceSourcePrice;
    }
    out = _accountData(
      DataTypes.CalculateUserAccountDataParams({
        userConfig: DataTypes.UserConfigurationMap({data: userConfig}),
        reservesCount: reserves.length,
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

/// The token base's own _mintScaled/_burnScaled on a user state we set; the events are the
/// vectors. TokenCase reports the scaled balance before and after, read from storage.
contract TokenHarness is ScaledBalanceTokenBase {
  event TokenCase(uint256 indexed n, uint256 scaledBefore, uint256 scaledAfter);

  struct Op {
    uint120 scaledBefore;
    uint128 previousIndex;
    uint256 index;
    uint256 amount; // underlying; the 3.0.2 base rayDivs it itself
    bool burn;
    bool debt; // the same base code for aTokens and debt tokens in 3.0.2
  }

  constructor(IPool pool) ScaledBalanceTokenBase(pool, 'H', 'H', 18) {}

  function run(Op[] calldata ops) external {
    _totalSupply = type(uint128).max;
    for (uint256 n = 0; n < ops.length; n++) {
      Op calldata o = ops[n];
      address user = address(uint160(0x10000 + n));
      _userState[user].balance = o.scaledBefore;
      _userState[user].additionalData = o.previousIndex;
      if (o.burn) {
        _burnScaled(user, user, o.amount, o.index);
      } else {
        _mintScaled(user, user, o.amount, o.index);
      }
      emit TokenCase(n, o.scaledBefore, _userState[user].balance);
    }
  }
}
